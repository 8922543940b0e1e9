"""Image features for the filter's similar-region search (notes 002, "特征提取").

Each function takes a 2-D grey image (uint8, or float holding 0..255 values) and returns
a feature array; `datasets.filter.similar` compares a masked template's features with the
features of windows of the reference half. Library code is used where it exists
(OpenCV Sobel/Canny, scikit-image HOG). pHash and LBP are written out in numpy so that
`datasets.filter.similar_fast` can apply the same arithmetic to many windows at once; tests
compare them with `cv2.resize(INTER_AREA)`, `scipy.fft.dct` and scikit-image's
`local_binary_pattern` (see `lbp` for the one, documented, difference: exact ties).
"""
import functools
import logging

import cv2
import numpy as np
from skimage import feature as skfeature

log = logging.getLogger(__name__)

HOG_ORIENTATIONS = 9
HOG_CELL_PX = 8
HOG_BLOCK_CELLS = 2
LBP_POINTS = 8
LBP_RADIUS = 2
LBP_CELL_PX = 8
PHASH_SIZE = 32
PHASH_KEEP = 8
CANNY_LOW = 50
CANNY_HIGH = 150
#: What the similar-region search can compare (:func:`window_feature`).
FEATURES = ("hog", "phash", "lbp", "canny", "raw")


def _as_gray(img, name="image"):
    img = np.asarray(img)
    if img.ndim != 2:
        raise ValueError(f"{name}: want a 2-D grey image, got shape {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"{name}: empty image of shape {img.shape}")
    return img


def sobel(gray, ksize=3, border=cv2.BORDER_CONSTANT):
    """Horizontal and vertical Sobel derivatives (cv2.Sobel, float32).

    Parameters
    ----------
    gray : (H, W) array
        Grey image.
    ksize : int
        Sobel aperture (3 = the notes' kernels).
    border : int
        OpenCV border mode; the default zero padding is the notes' loop.

    Returns
    -------
    gx, gy : (H, W) float32
        d/dx (right minus left) and d/dy (bottom minus top). The notes' kernels are the
        negatives: notes `out_h = clip(-gx, 0, 255)`, `out_v = clip(-gy, 0, 255)`.
    """
    gray = _as_gray(gray).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=ksize, borderType=border)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=ksize, borderType=border)
    return gx, gy


def hog(gray):
    """HOG descriptor (scikit-image): 9 bins over 0-180 deg, 8x8 cells, 2x2 blocks, L2-Hys.

    Parameters
    ----------
    gray : (H, W) array
        Grey image, at least 16x16 pixels.

    Returns
    -------
    (n_blocks_row * n_blocks_col * 2 * 2 * 9,) float64
        skimage's `feature_vector=True` order (block row, block col, cell row, cell col, bin).
    """
    gray = _as_gray(gray)
    return skfeature.hog(gray, orientations=HOG_ORIENTATIONS,
                         pixels_per_cell=(HOG_CELL_PX, HOG_CELL_PX),
                         cells_per_block=(HOG_BLOCK_CELLS, HOG_BLOCK_CELLS),
                         block_norm="L2-Hys", feature_vector=True)


@functools.lru_cache(maxsize=256)
def area_resize_matrix(n_in, n_out):
    """Linear map of 1-D area resampling (OpenCV INTER_AREA when shrinking).

    Output sample j averages the input over [j * s, (j + 1) * s) with s = n_in / n_out,
    each input pixel weighted by its overlap. A 2-D resize is `A_rows @ img @ A_cols.T`.

    Returns
    -------
    (n_out, n_in) float64, rows sum to 1. Read-only (cached).
    """
    scale = n_in / n_out
    edges_out = np.arange(n_out + 1) * scale
    lo = np.maximum(edges_out[:-1, None], np.arange(n_in)[None, :])
    hi = np.minimum(edges_out[1:, None], np.arange(1, n_in + 1)[None, :])
    m = np.clip(hi - lo, 0, None) / scale
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=8)
def dct_matrix(n):
    """Orthonormal DCT-II matrix `C` (n x n): `C @ x` equals `scipy.fft.dct(x, norm='ortho')`."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    c.setflags(write=False)
    return c


@functools.lru_cache(maxsize=256)
def phash_projection(n_in):
    """(PHASH_KEEP, n_in) map: area-resize n_in -> 32, then the 8 lowest DCT-II rows."""
    p = dct_matrix(PHASH_SIZE)[:PHASH_KEEP] @ area_resize_matrix(n_in, PHASH_SIZE)
    p.setflags(write=False)
    return p


def phash_coefficients(gray):
    """Top-left 8x8 orthonormal 2-D DCT of the image area-resized to 32x32 (float64)."""
    gray = _as_gray(gray).astype(np.float64)
    return phash_projection(gray.shape[0]) @ gray @ phash_projection(gray.shape[1]).T


def phash(gray):
    """Perceptual hash (notes 002, pHash): 32x32 -> DCT -> top-left 8x8 -> bit = coef >= mean.

    Returns
    -------
    (64,) bool
        Row-major bits; the mean is over all 64 coefficients (DC included), as in the notes.
    """
    coef = phash_coefficients(gray)
    return (coef >= coef.mean()).ravel()


LBP_TIE = 1e-9


@functools.lru_cache(maxsize=4)
def lbp_samples(points=LBP_POINTS, radius=LBP_RADIUS):
    """Bilinear sampling of the LBP circle, as scikit-image places it.

    Returns
    -------
    tuple of (r0, r1, c0, c1, dr, dc) per sample point: integer tap offsets (floor, ceil)
    and the interpolation weights, fixed for every pixel.
    """
    angles = 2 * np.pi * np.arange(points, dtype=np.double) / points
    rp = np.round(-radius * np.sin(angles), 5)
    cp = np.round(radius * np.cos(angles), 5)
    out = []
    for r, c in zip(rp, cp):
        r0, c0 = int(np.floor(r)), int(np.floor(c))
        out.append((r0, int(np.ceil(r)), c0, int(np.ceil(c)), float(r - r0), float(c - c0)))
    return tuple(out)


def lbp_codes(tap, center):
    """Uniform LBP codes from neighbour values: `tap(dy, dx)` gives the pixels at that
    offset from each centre (an array shaped like `center`)."""
    bits = []
    for r0, r1, c0, c1, dr, dc in lbp_samples():
        if dr == 0 and dc == 0:      # on the pixel grid: (1 - 0) * a + 0 * b is a exactly
            bits.append(tap(r0, c0) - center >= -LBP_TIE)
            continue
        top = (1 - dc) * tap(r0, c0) + dc * tap(r0, c1)
        bottom = (1 - dc) * tap(r1, c0) + dc * tap(r1, c1)
        bits.append((1 - dr) * top + dr * bottom - center >= -LBP_TIE)
    bits = np.stack(bits).astype(np.int8)
    # skimage counts the P-1 transitions between consecutive points, not the wrap-around
    changes = np.abs(np.diff(bits, axis=0)).sum(0)
    return np.where(changes <= 2, bits.sum(0), LBP_POINTS + 1).astype(np.int64)


def lbp(gray):
    """Rotation-invariant uniform LBP codes (P=8, R=2, zero outside the image): 0..9.

    scikit-image's `local_binary_pattern(gray, 8, 2, 'uniform')` up to ties: skimage
    recomputes the bilinear weights from each pixel's absolute coordinates, so when an
    interpolated neighbour equals the centre exactly (a flat patch) rounding decides its
    bit, differently at different positions. Here the weights are fixed and a neighbour
    within LBP_TIE of the centre counts as >= (the exact-arithmetic answer), so a window's
    codes do not depend on where it was cut from the half. Tests check equality with
    skimage at every pixel without such a tie.
    """
    img = _as_gray(gray).astype(np.float64)
    h, w = img.shape
    r = int(np.ceil(LBP_RADIUS))
    pad = np.pad(img, r)
    return lbp_codes(lambda dy, dx: pad[r + dy:r + dy + h, r + dx:r + dx + w], img)


def lbp_ties(gray):
    """Pixels where an interpolated (off-grid) neighbour is within LBP_TIE of the centre.

    Only there can `lbp` and skimage differ; neighbours on the pixel grid are read exactly
    by both.
    """
    img = _as_gray(gray).astype(np.float64)
    h, w = img.shape
    r = int(np.ceil(LBP_RADIUS))
    pad = np.pad(img, r)
    tie = np.zeros((h, w), bool)
    for r0, r1, c0, c1, dr, dc in lbp_samples():
        if dr == 0 and dc == 0:
            continue
        def tap(dy, dx):
            return pad[r + dy:r + dy + h, r + dx:r + dx + w]
        top = (1 - dc) * tap(r0, c0) + dc * tap(r0, c1)
        bottom = (1 - dc) * tap(r1, c0) + dc * tap(r1, c1)
        tie |= np.abs((1 - dr) * top + dr * bottom - img) <= LBP_TIE
    return tie


def lbp_histograms(gray, valid=None):
    """Per-cell histograms of LBP codes, counting only `valid` pixels.

    Parameters
    ----------
    gray : (H, W) array
        Grey image (a masked window in `datasets.filter.similar`).
    valid : (H, W) bool/uint8 array or None
        Pixels to count (the template ring); None counts all.

    Returns
    -------
    (floor(H/8) * floor(W/8) * 10,) float64
        Counts divided by the cell area (64), cells in row-major order, like HOG pixels
        beyond the last whole cell are ignored.
    """
    codes = lbp(gray).astype(np.int64)
    h, w = codes.shape
    nr, nc = h // LBP_CELL_PX, w // LBP_CELL_PX
    nbins = LBP_POINTS + 2
    valid = np.ones((h, w), bool) if valid is None else np.asarray(valid).astype(bool)
    codes = codes[:nr * LBP_CELL_PX, :nc * LBP_CELL_PX]
    valid = valid[:nr * LBP_CELL_PX, :nc * LBP_CELL_PX]
    cell = (np.arange(nr * LBP_CELL_PX)[:, None] // LBP_CELL_PX) * nc \
        + np.arange(nc * LBP_CELL_PX)[None, :] // LBP_CELL_PX
    idx = (cell * nbins + codes)[valid]
    hist = np.bincount(idx, minlength=nr * nc * nbins).astype(np.float64)
    return hist / (LBP_CELL_PX * LBP_CELL_PX)


def canny(gray, low=CANNY_LOW, high=CANNY_HIGH):
    """Canny edge map (cv2.Canny, 3x3 Sobel, L1 gradient) as a bool array."""
    gray = _as_gray(gray)
    return cv2.Canny(np.ascontiguousarray(gray, dtype=np.uint8), low, high) > 0


def raw(gray):
    """Pixel values as a flat float64 vector."""
    return _as_gray(gray).astype(np.float64).ravel()


def window_feature(masked, mask, feature):
    """Feature of one masked window of the similar-region search, by name: the per-window loop
    of ``similar.find_similar_loop`` and the template of both search paths.

    Parameters
    ----------
    masked : (H, W) uint8, inner box already zero.
    mask : (H, W) uint8 ring mask.
    feature : one of FEATURES.

    Returns
    -------
    1-D array: what the search's distance compares (the ring's values for canny and raw).
    """
    ring = mask.astype(bool)
    if feature == "hog":
        return hog(masked)
    if feature == "phash":
        return phash(masked)
    if feature == "lbp":
        return lbp_histograms(masked, valid=ring)
    if feature == "canny":
        return canny(masked)[ring]
    if feature == "raw":
        return masked[ring].astype(np.float64)
    raise ValueError(f"unknown feature {feature!r}; choose one of {list(FEATURES)}")
