"""Batched window features for `datasets.similar.find_similar` (the fast path).

Every function here returns, for a grid of same-sized windows of a reference region, what
`datasets.similar.window_feature` gives for each masked window (up to float rounding),
without computing each window from scratch:

- HOG: gradients, orientation bins and per-bin integral images are computed once over the
  search region; a window's 8x8 cell histograms are box sums of those. Only pixels whose
  gradient changes inside a masked window (the window's 1-px frame, where scikit-image
  zeroes the gradient, and a 1-px band around the blacked-out box) are recomputed per
  window; cells fully inside the box are emptied with one more box sum. Block
  normalisation (L2-Hys) is vectorised over all windows.
- LBP: codes once over the region (translation-invariant, see `features.lbp`), per-cell
  code histograms from integral images, pixels within R of the frame or the box
  recomputed per window.
- raw: ring-pixel sums of squares and cross-correlation with the template as exact
  float64 sums of integers (integral images + einsum over strided window views).
- pHash: area-resize and DCT are linear, and the mask is a rectangle, so the 8x8 DCT of
  every masked window is two separable matrix products over the region.
- Canny: hysteresis is not local, so each window still runs cv2.Canny (C speed); only the
  masking and the distance are batched.

Window grid: `wys` (ny,) and `wxs` (nx,) are window top-left corners in region
coordinates; outputs are ordered row-major over (wys, wxs).
"""
import logging

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from datasets import distances as dist
from datasets import features

log = logging.getLogger(__name__)


def _integral(planes):
    """Zero-padded 2-D integral images over the last two axes (float64)."""
    planes = np.asarray(planes, dtype=np.float64)
    out = np.zeros(planes.shape[:-2] + (planes.shape[-2] + 1, planes.shape[-1] + 1))
    out[..., 1:, 1:] = planes.cumsum(-2).cumsum(-1)
    return out


def _rect_sums(ii_last, wys, wxs, y1, x1, y2, x2):
    """Box sums [y1, y2) x [x1, x2) (window coords, arrays of k rects) for every window.

    ii_last : (Hs + 1, Ws + 1, ...) integral image with the channel axes last.
    Returns (ny, nx, k, ...).
    """
    ya = wys[:, None, None] + np.asarray(y1)[None, None, :]
    yb = wys[:, None, None] + np.asarray(y2)[None, None, :]
    xa = wxs[None, :, None] + np.asarray(x1)[None, None, :]
    xb = wxs[None, :, None] + np.asarray(x2)[None, None, :]
    return ii_last[yb, xb] - ii_last[ya, xb] - ii_last[yb, xa] + ii_last[ya, xa]


def _masked_values(region, mask, wys, wxs, rows, cols):
    """Values of the masked windows at window pixels (rows, cols): (ny, nx, k) float64.

    Pixels outside the window or inside the blacked-out box read as 0.
    """
    h, w = mask.shape
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    rr = np.clip(rows, 0, h - 1)
    cc = np.clip(cols, 0, w - 1)
    keep = inside & (mask[rr, cc] > 0)
    vals = region[wys[:, None, None] + rr[None, None, :], wxs[None, :, None] + cc[None, None, :]]
    return np.where(keep[None, None, :], vals, 0.0)


# ---------------------------------------------------------------- HOG

def _hog_bins(g_row, g_col):
    """Magnitude and orientation bin of gradients, exactly as skimage's hog_histograms."""
    n = features.HOG_ORIENTATIONS
    mag = np.hypot(g_col, g_row)
    ori = np.arctan2(g_row, g_col) * (180 / np.pi) % 180
    # skimage keeps the bin edges as C floats: pixel in bin i iff edge[i] <= ori < edge[i+1]
    edges = np.array([np.float32(180.0 / n * i) for i in range(1, n)], dtype=np.float64)
    return mag, np.searchsorted(edges, ori, side="right")


def _clean(hist):
    """Snap box-sum round-off to exact zeros and scale like skimage (cell mean, not sum).

    Pixel values are integers, so a gradient is 0 or has magnitude >= 1 and a non-empty
    bin sums to >= 1: anything below 0.5 is cancellation residue (~1e-13), which block
    normalisation would otherwise blow up in cells that are empty in the masked window.
    """
    hist[hist < 0.5] = 0.0
    hist /= features.HOG_CELL_PX * features.HOG_CELL_PX
    return hist


def _l2hys(blocks, eps=1e-5):
    """skimage's L2-Hys block normalisation over the last axis."""
    out = blocks / np.sqrt(np.einsum("...i,...i->...", blocks, blocks) + eps ** 2)[..., None]
    np.minimum(out, 0.2, out=out)
    out /= np.sqrt(np.einsum("...i,...i->...", out, out) + eps ** 2)[..., None]
    return out


class _HogSearch:
    """Everything about the windows' HOG that does not depend on the template.

    Cells (8x8 px) of window (ky, kx) sit at region pixels (wys[ky] + 8 i, wxs[kx] + 8 j).
    A cell is *modified* if it holds a pixel whose gradient differs in the masked window
    from the unmasked region: the window's 1-px frame (skimage zeroes the gradient across
    the image border) and the blacked-out box grown by 1 px. Other cells are plain box
    sums of the region's per-bin magnitudes, computed once on the lattice of window
    corners; blocks made only of such cells are normalised once on that lattice and
    shared by every window that contains them.
    """

    def __init__(self, region, mask, wys, wxs):
        cell, nb = features.HOG_CELL_PX, features.HOG_ORIENTATIONS
        self.mask = mask
        self.region = region
        h, w = mask.shape
        self.ncr, self.ncc = ncr, ncc = h // cell, w // cell
        self.nbr, self.nbc = ncr - 1, ncc - 1
        self.wys, self.wxs = wys, wxs
        hs, ws = region.shape
        g_row = np.zeros_like(region)
        g_col = np.zeros_like(region)
        g_row[1:-1] = region[2:] - region[:-2]
        g_col[:, 1:-1] = region[:, 2:] - region[:, :-2]
        self.mag, self.bins = mag, bins = _hog_bins(g_row, g_col)
        self.abs_row, self.abs_col = np.abs(g_row), np.abs(g_col)
        self.row_pos = g_row > 0
        planes = np.zeros((hs, ws, nb))
        rr, cc = np.indices((hs, ws))
        planes[rr, cc, bins] = mag
        planes.cumsum(axis=0, out=planes)
        planes.cumsum(axis=1, out=planes)
        self.ii = ii = np.zeros((hs + 1, ws + 1, nb))
        ii[1:, 1:] = planes

        # global cell sums and normalised blocks on the lattice of possible corners
        step = np.gcd.reduce(np.concatenate([np.diff(wys), np.diff(wxs), [cell]]).astype(int))
        self.g = g = int(step)
        q = cell // g
        iig = ii[::g, ::g]
        self.cell_sums = iig[q:, q:] - iig[:-q, q:] - iig[q:, :-q] + iig[:-q, :-q]
        self.cells = _clean(self.cell_sums.copy())
        c = self.cells
        blocks = np.concatenate([c[:-q, :-q], c[:-q, q:], c[q:, :-q], c[q:, q:]], axis=-1)
        self.blocks = _l2hys(blocks)                       # (Ly, Lx, 4 nb)
        self.block_sq = np.einsum("yxd,yxd->yx", self.blocks, self.blocks)

        zero = np.argwhere(mask == 0)
        iy1, ix1 = zero.min(0)
        iy2, ix2 = zero.max(0) + 1
        self.inner = (iy1, ix1, iy2, ix2)
        self.z = (iy1 + 1, ix1 + 1, iy2 - 1, ix2 - 1)     # zero gradient in the masked window

    def lattice_view(self, arr, nr=None, nc=None):
        """View (ny, nx, nr, nc, ...) of a lattice array at every window's blocks (or cells)."""
        g, q = self.g, features.HOG_CELL_PX // self.g
        sy, sx = (int(np.diff(self.wys[:2])[0]) // g if len(self.wys) > 1 else 0,
                  int(np.diff(self.wxs[:2])[0]) // g if len(self.wxs) > 1 else 0)
        base = arr[self.wys[0] // g:, self.wxs[0] // g:]
        st = base.strides
        shape = (len(self.wys), len(self.wxs), nr or self.nbr, nc or self.nbc) + arr.shape[2:]
        need_y = (shape[0] - 1) * sy + (shape[2] - 1) * q
        need_x = (shape[1] - 1) * sx + (shape[3] - 1) * q
        if need_y >= base.shape[0] or need_x >= base.shape[1]:
            raise RuntimeError("HOG lattice too small for the window grid")
        return np.lib.stride_tricks.as_strided(
            base, shape, (sy * st[0], sx * st[1], q * st[0], q * st[1]) + st[2:], writeable=False)

    def exact_cells(self, ci, cj):
        """Histograms of cells (ci[k], cj[k]) in every masked window: (ny, nx, K, nb)."""
        cell, nb = features.HOG_CELL_PX, features.HOG_ORIENTATIONS
        wys, wxs, g = self.wys, self.wxs, self.g
        h, w = self.mask.shape
        ly = (wys[:, None] + cell * ci[None, :]) // g
        lx = (wxs[:, None] + cell * cj[None, :]) // g
        hist = self.cell_sums[ly[:, None, :], lx[None, :, :]]        # (ny, nx, K, nb)
        zy1, zx1, zy2, zx2 = self.z
        ry1, ry2 = np.maximum(ci * cell, zy1), np.minimum(ci * cell + cell, zy2)
        rx1, rx2 = np.maximum(cj * cell, zx1), np.minimum(cj * cell + cell, zx2)
        hit = np.flatnonzero((ry2 > ry1) & (rx2 > rx1))
        if len(hit):
            hist[:, :, hit] -= _rect_sums(self.ii, wys, wxs, ry1[hit], rx1[hit], ry2[hit], rx2[hit])

        # changed pixels of these cells, in window coordinates
        kk, yy, xx = np.meshgrid(np.arange(len(ci)), np.arange(cell), np.arange(cell),
                                 indexing="ij")
        yy = yy + cell * ci[:, None, None]
        xx = xx + cell * cj[:, None, None]
        iy1, ix1, iy2, ix2 = self.inner
        top_bot = (yy == 0) | (yy == h - 1)
        lef_rig = (xx == 0) | (xx == w - 1)
        band = (yy >= iy1 - 1) & (yy < iy2 + 1) & (xx >= ix1 - 1) & (xx < ix2 + 1)
        inz = (yy >= zy1) & (yy < zy2) & (xx >= zx1) & (xx < zx2)
        band &= ~inz
        frame_only = (top_bot | lef_rig) & ~band
        corner = top_bot & lef_rig
        win = np.arange(len(wys) * len(wxs)).reshape(len(wys), len(wxs), 1)
        idx, wts = [], []

        def pix(sel):
            return kk[sel], yy[sel], xx[sel]

        def gather(arr, y, x):
            return arr[wys[:, None, None] + y[None, None, :], wxs[None, :, None] + x[None, None, :]]

        # every changed pixel: remove its unmasked contribution
        k, y, x = pix(band | frame_only)
        idx.append((win * len(ci) + k) * nb + gather(self.bins, y, x))
        wts.append(-gather(self.mag, y, x))
        # frame, away from the box: one gradient component is zeroed, no trigonometry needed
        # (skimage: g_row = 0 on the top/bottom row, g_col = 0 on the left/right column)
        k, y, x = pix(top_bot & ~lef_rig & ~band)
        b = _hog_bins(np.zeros(1), np.ones(1))[1][0]
        idx.append(np.broadcast_to((win * len(ci) + k) * nb + b, (len(wys), len(wxs), len(k))))
        wts.append(gather(self.abs_col, y, x))
        k, y, x = pix(lef_rig & ~top_bot & ~band)
        b_up = _hog_bins(np.ones(1), np.zeros(1))[1][0]
        b_dn = _hog_bins(-np.ones(1), np.zeros(1))[1][0]
        idx.append((win * len(ci) + k) * nb + np.where(gather(self.row_pos, y, x), b_up, b_dn))
        wts.append(gather(self.abs_row, y, x))
        del corner  # corners get magnitude 0: removal above is all they need
        # band around the box: masked neighbours, full gradient
        k, y, x = pix(band)
        if len(k):
            up = _masked_values(self.region, self.mask, wys, wxs, y + 1, x)
            dn = _masked_values(self.region, self.mask, wys, wxs, y - 1, x)
            rt = _masked_values(self.region, self.mask, wys, wxs, y, x + 1)
            lf = _masked_values(self.region, self.mask, wys, wxs, y, x - 1)
            er = np.where(((y == 0) | (y == h - 1))[None, None, :], 0.0, up - dn)
            ec = np.where(((x == 0) | (x == w - 1))[None, None, :], 0.0, rt - lf)
            mag_e, bin_e = _hog_bins(er, ec)
            idx.append((win * len(ci) + k) * nb + bin_e)
            wts.append(mag_e)
        idx = np.concatenate([a.ravel() for a in idx])
        wts = np.concatenate([a.ravel() for a in wts])
        hist += np.bincount(idx, wts, minlength=hist.size).reshape(hist.shape)
        return _clean(hist)

    def all_cells(self):
        """Exact cell histograms of every window: (ny, nx, ncr, ncc, nb)."""
        ci, cj = (a.ravel() for a in np.indices((self.ncr, self.ncc)))
        hist = self.exact_cells(ci, cj)
        return hist.reshape(hist.shape[:2] + (self.ncr, self.ncc, -1))

    def modified_cells(self):
        """(changed (ncr, ncc) bool, zero (ncr, ncc) bool): cells needing per-window work."""
        cell = features.HOG_CELL_PX
        h, w = self.mask.shape
        iy1, ix1, iy2, ix2 = self.inner
        zy1, zx1, zy2, zx2 = self.z
        y0 = cell * np.arange(self.ncr)
        x0 = cell * np.arange(self.ncc)
        frame_r = (y0 == 0) | (y0 + cell > h - 1)
        frame_c = (x0 == 0) | (x0 + cell > w - 1)
        near_r = (y0 < iy2 + 1) & (y0 + cell > iy1 - 1)
        near_c = (x0 < ix2 + 1) & (x0 + cell > ix1 - 1)
        zero_r = (y0 >= zy1) & (y0 + cell <= zy2)
        zero_c = (x0 >= zx1) & (x0 + cell <= zx2)
        zero = zero_r[:, None] & zero_c[None, :]
        changed = (frame_r[:, None] | frame_c[None, :] | (near_r[:, None] & near_c[None, :]))
        return changed & ~zero, zero


def hog_single(img):
    """`features.hog` of one image in numpy (same numbers up to skimage's float32 sums).

    Used for the template, where one skimage call would cost as much as the whole
    batched search.
    """
    cell, nb = features.HOG_CELL_PX, features.HOG_ORIENTATIONS
    img = np.asarray(img, dtype=np.float64)
    h, w = img.shape
    ncr, ncc = h // cell, w // cell
    g_row = np.zeros_like(img)
    g_col = np.zeros_like(img)
    g_row[1:-1] = img[2:] - img[:-2]
    g_col[:, 1:-1] = img[:, 2:] - img[:, :-2]
    mag, bins = _hog_bins(g_row[:ncr * cell, :ncc * cell], g_col[:ncr * cell, :ncc * cell])
    cell_id = (np.arange(ncr * cell)[:, None] // cell) * ncc + np.arange(ncc * cell) // cell
    hist = np.bincount((cell_id * nb + bins).ravel(), mag.ravel(), minlength=ncr * ncc * nb)
    hist = hist.reshape(ncr, ncc, nb) / (cell * cell)
    blocks = np.concatenate([hist[:-1, :-1], hist[:-1, 1:], hist[1:, :-1], hist[1:, 1:]], -1)
    return _l2hys(blocks).ravel()


def hog_windows(region, mask, wys, wxs):
    """HOG (as `features.hog`) of every masked window of `region`, all cells exact.

    Parameters
    ----------
    region : (Hs, Ws) float64
        Reference pixels covering all windows.
    mask : (H, W) uint8
        Ring mask (0 on the blacked-out box, a rectangle).
    wys, wxs : (ny,), (nx,) int
        Window top-left corners in region coordinates (evenly spaced).

    Returns
    -------
    (ny * nx, D) float64
    """
    hs = _HogSearch(region, mask, np.asarray(wys), np.asarray(wxs))
    hist = hs.all_cells()
    ny, nx = hist.shape[:2]
    blocks = sliding_window_view(hist, (2, 2), axis=(2, 3))  # (ny, nx, nbr, nbc, nb, 2, 2)
    blocks = np.ascontiguousarray(np.moveaxis(blocks, 4, 6))  # (..., 2, 2, nb), skimage order
    blocks = _l2hys(blocks.reshape(ny * nx, hs.nbr * hs.nbc, -1))
    return blocks.reshape(ny * nx, -1)


def hog_terms(region, mask, wys, wxs, template):
    """Dot products of the template HOG with every window's HOG, and the windows' norms.

    Returns
    -------
    tw, ww : (ny * nx,) float64
        `template @ f` and `f @ f` for each window's feature `f`.
    """
    hs = _HogSearch(region, mask, np.asarray(wys), np.asarray(wxs))
    nb = features.HOG_ORIENTATIONS
    ny, nx = len(wys), len(wxs)
    t = template.reshape(hs.nbr, hs.nbc, 4 * nb)
    changed, zero = hs.modified_cells()
    bad = changed | zero
    # a block is plain if none of its 2x2 cells needs per-window work
    b_bad = bad[:-1, :-1] | bad[:-1, 1:] | bad[1:, :-1] | bad[1:, 1:]
    b_zero = zero[:-1, :-1] & zero[:-1, 1:] & zero[1:, :-1] & zero[1:, 1:]
    t_plain = np.where(b_bad[..., None], 0.0, t)
    tw = np.einsum("yxijd,ijd->yx", hs.lattice_view(hs.blocks), t_plain)
    ww = np.einsum("yxij,ij->yx", hs.lattice_view(hs.block_sq), (~b_bad).astype(float))

    per_win = b_bad & ~b_zero
    if per_win.any():
        ci, cj = np.nonzero(changed)
        hist = np.empty((ny, nx, hs.ncr, hs.ncc, nb))
        hist[...] = hs.lattice_view(hs.cells, hs.ncr, hs.ncc)
        hist[:, :, ci, cj] = hs.exact_cells(ci, cj)
        hist[:, :, zero] = 0.0
        bi, bj = np.nonzero(per_win)
        blocks = np.concatenate([hist[:, :, bi, bj], hist[:, :, bi, bj + 1],
                                 hist[:, :, bi + 1, bj], hist[:, :, bi + 1, bj + 1]], axis=-1)
        blocks = _l2hys(blocks)                                  # (ny, nx, K, 4 nb)
        tw += np.einsum("yxkd,kd->yx", blocks, t[bi, bj])
        ww += np.einsum("yxkd,yxkd->yx", blocks, blocks)
    return tw.ravel(), ww.ravel()


# ---------------------------------------------------------------- raw, pHash, Canny, LBP

def _inner(mask):
    zero = np.argwhere(mask == 0)
    iy1, ix1 = zero.min(0)
    iy2, ix2 = zero.max(0) + 1
    return int(iy1), int(ix1), int(iy2), int(ix2)


def raw_terms(region, mask, wys, wxs, masked_template):
    """Exact ring sums for raw pixels: |t|^2, t.w and |w|^2 of every window's ring.

    The cross term is an FFT correlation in float64 rounded to the nearest integer: the
    true value is an integer below 2^53 and the FFT error is far below 0.5, so all three
    terms (and hence mse/euclidean/cosine) equal the loop's exact integer sums.
    """
    from scipy import signal
    h, w = mask.shape
    t = masked_template.astype(np.float64)
    tt = float(np.sum(t * t))
    sub = region[wys[0]:wys[-1] + h, wxs[0]:wxs[-1] + w]
    corr = signal.correlate(sub, t, mode="valid", method="fft")
    tw = np.rint(corr[(wys - wys[0])[:, None], (wxs - wxs[0])[None, :]])
    ii = _integral(region * region)
    iy1, ix1, iy2, ix2 = _inner(mask)
    whole = _rect_sums(ii[..., None], wys, wxs, [0], [0], [h], [w])[..., 0, 0]
    box = _rect_sums(ii[..., None], wys, wxs, [iy1], [ix1], [iy2], [ix2])[..., 0, 0]
    return tt, tw.ravel(), (whole - box).ravel()


def _window_stack(region, wys, wxs, h, w):
    """(ny, nx, h, w) read-only view of all windows."""
    view = sliding_window_view(region, (h, w))
    return view[wys][:, wxs]


def phash_windows(region, mask, wys, wxs):
    """pHash bits (as `features.phash`) of every masked window: (ny * nx, 64) bool.

    The 8x8 DCT of the area-resized masked window is `P_h @ (win - win * box) @ P_w.T`;
    both terms are separable, so each is two matrix products over strided views.
    """
    h, w = mask.shape
    ph, pw = features.phash_projection(h), features.phash_projection(w)
    iy1, ix1, iy2, ix2 = _inner(mask)

    def coef(y1, x1, y2, x2):
        # columns first: (Hs, nx, 8), then rows: (ny, nx, 8, 8)
        cols = sliding_window_view(region, x2 - x1, axis=1)[:, wxs + x1]     # (Hs, nx, x2-x1)
        a = cols @ pw[:, x1:x2].T                                            # (Hs, nx, 8)
        rows = sliding_window_view(a, y2 - y1, axis=0)[wys + y1]             # (ny, nx, 8, y2-y1)
        return np.einsum("uh,yxvh->yxuv", ph[:, y1:y2], rows)

    c = coef(0, 0, h, w) - coef(iy1, ix1, iy2, ix2)
    c = c.reshape(len(wys) * len(wxs), -1)
    return c >= c.mean(axis=1, keepdims=True)


def canny_windows(region, mask, wys, wxs):
    """Canny edges of every masked window at the ring pixels: (ny * nx, n_ring) bool.

    Canny's hysteresis links edges across the whole window, so each window runs cv2.Canny.
    """
    h, w = mask.shape
    ring = mask.astype(bool)
    img = region.astype(np.uint8)
    out = np.empty((len(wys) * len(wxs), int(ring.sum())), bool)
    k = 0
    for y in wys:
        for x in wxs:
            win = cv2.bitwise_and(img[y:y + h, x:x + w], img[y:y + h, x:x + w], mask=mask)
            out[k] = features.canny(win)[ring]
            k += 1
    return out


def lbp_windows(region, mask, wys, wxs):
    """LBP cell histograms (as `features.lbp_histograms`) of every masked window.

    skimage's LBP samples neighbours by bilinear interpolation whose rounding depends on
    the pixel's position in the image, so codes are computed per window (C speed); the
    histograms of all windows come from one bincount.
    """
    h, w = mask.shape
    cell, nbins = features.LBP_CELL_PX, features.LBP_POINTS + 2
    nr, nc = h // cell, w // cell
    ring = mask.astype(bool)[:nr * cell, :nc * cell]
    cell_id = ((np.arange(nr * cell)[:, None] // cell) * nc + np.arange(nc * cell) // cell)[ring]
    img = region.astype(np.uint8)
    n = len(wys) * len(wxs)
    codes = np.empty((n, cell_id.size), np.int64)
    k = 0
    for y in wys:
        for x in wxs:
            win = cv2.bitwise_and(img[y:y + h, x:x + w], img[y:y + h, x:x + w], mask=mask)
            codes[k] = features.lbp(win)[:nr * cell, :nc * cell][ring]
            k += 1
    idx = (np.arange(n)[:, None] * (nr * nc) + cell_id[None, :]) * nbins + codes
    hist = np.bincount(idx.ravel(), minlength=n * nr * nc * nbins).astype(np.float64)
    return hist.reshape(n, -1) / (cell * cell)


def distances(feature, distance, masked_template, mask, region, wys, wxs):
    """Distance from the template to every masked window (row-major over wys, wxs).

    Parameters
    ----------
    feature, distance : str
        A valid pair (see `datasets.similar.VALID_DISTANCES`).
    masked_template : (H, W) uint8
        Template with its box blacked out.
    mask : (H, W) uint8
        Ring mask.
    region : (Hs, Ws) float64
        Reference pixels covering all windows.
    wys, wxs : int arrays
        Window corners in region coordinates.

    Returns
    -------
    (len(wys) * len(wxs),) float64
    """
    from datasets import similar  # window_feature: the template goes through the loop path
    if feature == "hog":
        template = hog_single(masked_template)
    else:
        template = similar.window_feature(masked_template, mask, feature)
    if feature == "hog":
        tw, ww = hog_terms(region, mask, wys, wxs, template)
        return _from_terms(distance, float(template @ template), tw, ww, template.size)
    if feature == "raw":
        tt, tw, ww = raw_terms(region, mask, wys, wxs, masked_template)
        return _from_terms(distance, tt, tw, ww, int(mask.sum()))
    if feature == "phash":
        return dist.to_many(distance, template, phash_windows(region, mask, wys, wxs))
    if feature == "canny":
        return dist.to_many(distance, template, canny_windows(region, mask, wys, wxs))
    if feature == "lbp":
        return dist.to_many(distance, template, lbp_windows(region, mask, wys, wxs))
    raise ValueError(f"unknown feature {feature!r}")


def _from_terms(distance, tt, tw, ww, size):
    """Distance from dot products: |t|^2, t.f and |f|^2 (euclidean, mse or cosine)."""
    if distance == "cosine":
        return dist._cosine_from(tw, tt, ww)
    sq = np.maximum(tt - 2.0 * tw + ww, 0.0)
    return sq / size if distance == "mse" else np.sqrt(sq)
