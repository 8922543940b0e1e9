"""Similar-region search in the reference half (notes 002, "特征提取").

For a detected box in the lesion half: grow it by `context` (fraction of its width and
height on every side), black out the box itself so only the surrounding ring is the
template (`ring_mask` + `cv2.bitwise_and`), then slide a window of the template's size
over the reference half around the same position (offsets -search_radius..search_radius
in steps of `stride`, both axes) and keep the window whose masked features are nearest.

Geometry (all boxes (x1, y1, x2, y2), x2/y2 exclusive, pixels):
- The query box is rounded outwards to whole pixels (floor x1/y1, ceil x2/y2), clipped
  to the part of the image both halves have (they may differ by a pixel or two), and
  grown symmetrically to at least MIN_BOX_PX; a box with no pixel inside raises.
- The grown template box is clipped to that common area too (the ring is thinner on a
  side that touches the border) and grown to at least MIN_TEMPLATE_PX (HOG needs 2x2
  cells of 8 px); offset (0, 0) is therefore always a valid window.
- Windows must lie entirely inside the reference half: offsets that would leave it are
  skipped (no padding), so near a border the search range is one-sided.
- Ties: distances within TIE_RTOL (relative) of the smallest count as equal; among them
  the smallest dx^2 + dy^2 wins, then the smallest (dy, dx) (row-major). The fast and the
  loop path share this rule.

What is compared (template and every window alike, after blacking out the box):
- hog: scikit-image HOG of the masked window (9 bins, 8x8 cells, 2x2 blocks, L2-Hys);
- phash: 64 bits, area-resize to 32x32, 2-D DCT, top-left 8x8 >= their mean (notes 002);
- lbp: per-8x8-cell histograms of uniform LBP codes (P=8, R=2) over the ring pixels;
- canny: cv2.Canny edges (50/150) at the ring pixels;
- raw: the ring's grey values.
Default distances: hog->euclidean, phash->hamming, lbp->euclidean, canny->jaccard,
raw->mse (VALID_DISTANCES lists the accepted pairs).

`find_similar` is the fast path (`datasets.filter.similar_fast`: features once over the
search region, exact per-window work only where the mask or the window border changes them);
`find_similar_loop` computes the same thing window by window with
`datasets.filter.features.window_feature` and is its test and benchmark reference
(bench/bench_search.py). Both take the template's feature from there, so the imports run one
way: similar -> similar_fast -> features.
"""
import dataclasses
import logging
import math
import numbers

import cv2
import numpy as np

from datasets.filter import distances as dist
from datasets.filter import similar_fast
from datasets.filter.features import FEATURES, window_feature

log = logging.getLogger(__name__)

MIN_BOX_PX = 4
MIN_TEMPLATE_PX = 16
TIE_RTOL = 1e-6

VALID_DISTANCES = {
    "hog": ("euclidean", "cosine", "mse"),
    "phash": ("hamming",),
    "lbp": ("euclidean", "cosine", "mse"),
    "canny": ("jaccard", "hamming"),
    "raw": ("mse", "euclidean", "cosine"),
}
DEFAULT_DISTANCE = {f: v[0] for f, v in VALID_DISTANCES.items()}


class NoRingError(ValueError):
    """The grown box leaves no ring to compare (the box fills the half)."""


@dataclasses.dataclass
class Match:
    """Best window of a similar-region search.

    box : (x1, y1, x2, y2) ints, matched box in reference-half pixels (the pixel query box
        shifted by (dx, dy); same size as `query_box`, inside the reference half).
    dx, dy : offset of the match relative to the query box, pixels.
    distance : feature distance of the best window (smaller = more similar).
    query_box : the pixel box in the lesion half that was searched for (rounded, clipped,
        at least MIN_BOX_PX), so crops of both halves have the same size.
    """
    box: tuple
    dx: int
    dy: int
    distance: float
    query_box: tuple = None


def check_pair(feature, distance=None):
    """Validate a feature/distance pair; returns the distance name (default if None)."""
    if feature not in VALID_DISTANCES:
        raise ValueError(f"unknown feature {feature!r}; choose one of {list(FEATURES)}")
    if distance is None:
        return DEFAULT_DISTANCE[feature]
    if distance not in dist.DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; choose one of {sorted(dist.DISTANCES)}")
    if distance not in VALID_DISTANCES[feature]:
        pairs = ", ".join(f"{f}->{'|'.join(d)}" for f, d in VALID_DISTANCES.items())
        raise ValueError(f"distance {distance!r} makes no sense for feature {feature!r}; "
                         f"valid pairs: {pairs}")
    return distance


def _grow_to(lo, hi, size, limit):
    """Grow [lo, hi) symmetrically to at least `size` inside [0, limit)."""
    if hi - lo >= size:
        return lo, hi
    size = min(size, limit)
    lo = lo - (size - (hi - lo)) // 2
    lo = min(max(lo, 0), limit - size)
    return lo, lo + size


def pixel_box(box, shape):
    """Round a float box outwards to whole pixels inside `shape` (H, W), at least MIN_BOX_PX.

    Raises
    ------
    ValueError
        Non-finite or inverted box, or no pixel of it inside the image.
    """
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"box: want (x1, y1, x2, y2) numbers, got {box!r}") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        raise ValueError(f"box: want finite x1 < x2 and y1 < y2, got {box!r}")
    h, w = shape
    bx1, by1 = max(int(math.floor(x1)), 0), max(int(math.floor(y1)), 0)
    bx2, by2 = min(int(math.ceil(x2)), w), min(int(math.ceil(y2)), h)
    if bx2 <= bx1 or by2 <= by1:
        raise ValueError(f"box {box!r} lies outside the image of size {w}x{h} (W x H)")
    bx1, bx2 = _grow_to(bx1, bx2, MIN_BOX_PX, w)
    by1, by2 = _grow_to(by1, by2, MIN_BOX_PX, h)
    return bx1, by1, bx2, by2


def grow_box(box, context, shape):
    """Template box: `box` grown by `context` x its size on each side, clipped to `shape`.

    Parameters
    ----------
    box : (x1, y1, x2, y2)
        Pixel box (ints or floats; margins are rounded to whole pixels).
    context : float >= 0
        Margin as a fraction of the box width (left/right) and height (top/bottom).
    shape : (H, W)
        Image size to clip to.

    Returns
    -------
    (x1, y1, x2, y2) ints, at least MIN_TEMPLATE_PX on each side (if the image allows).
    """
    if (isinstance(context, bool) or not isinstance(context, numbers.Real)
            or not math.isfinite(context) or context < 0):
        raise ValueError(f"context: want a finite number >= 0, got {context!r}")
    x1, y1, x2, y2 = box
    h, w = shape
    mx = int(round(context * (x2 - x1)))
    my = int(round(context * (y2 - y1)))
    gx1, gx2 = max(int(math.floor(x1)) - mx, 0), min(int(math.ceil(x2)) + mx, w)
    gy1, gy2 = max(int(math.floor(y1)) - my, 0), min(int(math.ceil(y2)) + my, h)
    gx1, gx2 = _grow_to(gx1, gx2, MIN_TEMPLATE_PX, w)
    gy1, gy2 = _grow_to(gy1, gy2, MIN_TEMPLATE_PX, h)
    return gx1, gy1, gx2, gy2


def ring_mask(h, w, inner_box):
    """Template mask: 1 on the ring, 0 inside `inner_box` (window coordinates).

    Parameters
    ----------
    h, w : int
        Window size.
    inner_box : (x1, y1, x2, y2) ints
        The blacked-out box, relative to the window (clipped to it).

    Returns
    -------
    (h, w) uint8 of 0/1, usable as the `mask` of `cv2.bitwise_and`.
    """
    m = np.ones((h, w), np.uint8)
    x1, y1, x2, y2 = (int(v) for v in inner_box)
    m[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = 0
    return m


def apply_mask(window, mask):
    """Black out the inner box of a uint8 window: `cv2.bitwise_and` with the ring mask."""
    window = np.ascontiguousarray(window, dtype=np.uint8)
    return cv2.bitwise_and(window, window, mask=mask)


@dataclasses.dataclass
class _Search:
    inner: tuple      # pixel query box in lesion coords
    outer: tuple      # template box in lesion coords
    mask: np.ndarray  # (H, W) uint8 ring mask of the template
    offsets: np.ndarray  # (n, 2) int (dy, dx), row-major, all valid
    ny: int           # offset grid size before validity filtering
    nx: int


def _validate_images(lesion_gray, reference_gray):
    for name, img in (("lesion_gray", lesion_gray), ("reference_gray", reference_gray)):
        if not isinstance(img, np.ndarray) or img.ndim != 2 or img.dtype != np.uint8:
            got = (f"{type(img).__name__} {getattr(img, 'dtype', '')} "
                   f"shape {getattr(img, 'shape', '')}")
            raise ValueError(f"{name}: want a 2-D uint8 array, got {got}")
    common = (min(lesion_gray.shape[0], reference_gray.shape[0]),
              min(lesion_gray.shape[1], reference_gray.shape[1]))
    if common[0] < MIN_TEMPLATE_PX or common[1] < MIN_TEMPLATE_PX:
        raise ValueError(f"halves too small: {lesion_gray.shape} and {reference_gray.shape}, "
                         f"need at least {MIN_TEMPLATE_PX}x{MIN_TEMPLATE_PX}")
    return common


def _plan(lesion_gray, reference_gray, box, context, search_radius, stride):
    common = _validate_images(lesion_gray, reference_gray)
    for name, v, lo in (("search_radius", search_radius, 0), ("stride", stride, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name}: want an integer >= {lo}, got {v!r}")
    inner = pixel_box(box, common)
    outer = grow_box(inner, context, common)
    ox1, oy1, ox2, oy2 = outer
    ix1, iy1, ix2, iy2 = inner
    mask = ring_mask(oy2 - oy1, ox2 - ox1, (ix1 - ox1, iy1 - oy1, ix2 - ox1, iy2 - oy1))
    if not mask.any():
        raise NoRingError(f"box {tuple(box)} leaves no ring around it (pixel box {inner}, "
                         f"grown box {outer}, context={context}): use context > 0 or a box "
                         f"smaller than the half")
    k = int(search_radius) // int(stride)
    steps = int(stride) * np.arange(-k, k + 1)
    dy, dx = np.meshgrid(steps, steps, indexing="ij")
    rh, rw = reference_gray.shape
    ok = (oy1 + dy >= 0) & (oy2 + dy <= rh) & (ox1 + dx >= 0) & (ox2 + dx <= rw)
    offsets = np.stack([dy[ok], dx[ok]], axis=1)
    return _Search(inner, outer, mask, offsets, len(steps), len(steps))


def pick_best(dists, offsets):
    """Index of the best window under the tie rule (see the module docstring).

    Parameters
    ----------
    dists : (n,) float
    offsets : (n, 2) int (dy, dx)
    """
    dists = np.asarray(dists, dtype=np.float64)
    if not np.all(np.isfinite(dists)):
        raise FloatingPointError(f"non-finite distance among {dists.size} windows")
    dmin = dists.min()
    cand = np.flatnonzero(dists <= dmin + TIE_RTOL * abs(dmin) + 1e-12)
    dy, dx = offsets[cand, 0], offsets[cand, 1]
    order = np.lexsort((dx, dy, dy * dy + dx * dx))
    return int(cand[order[0]])


def _match(plan, best, distance):
    dy, dx = (int(v) for v in plan.offsets[best])
    x1, y1, x2, y2 = plan.inner
    return dy, dx, Match(box=(x1 + dx, y1 + dy, x2 + dx, y2 + dy), dx=dx, dy=dy,
                         distance=float(distance), query_box=plan.inner)


def find_similar_loop(lesion_gray, reference_gray, box, context=0.5, search_radius=24,
                      stride=4, feature="hog", distance=None, return_all=False):
    """Reference implementation of `find_similar`: features of every window, one by one.

    Same parameters and result as `find_similar`. With `return_all=True` it also returns
    `(offsets (n, 2) [dy, dx], distances (n,))` for every valid window.
    """
    distance = check_pair(feature, distance)
    plan = _plan(lesion_gray, reference_gray, box, context, search_radius, stride)
    ox1, oy1, ox2, oy2 = plan.outer
    template = window_feature(apply_mask(lesion_gray[oy1:oy2, ox1:ox2], plan.mask),
                              plan.mask, feature)
    fn = dist.get(distance)
    ds = np.empty(len(plan.offsets))
    for i, (dy, dx) in enumerate(plan.offsets):
        win = reference_gray[oy1 + dy:oy2 + dy, ox1 + dx:ox2 + dx]
        ds[i] = fn(template, window_feature(apply_mask(win, plan.mask), plan.mask, feature))
    best = pick_best(ds, plan.offsets)
    match = _match(plan, best, ds[best])[2]
    return (match, plan.offsets, ds) if return_all else match


def find_similar(lesion_gray, reference_gray, box, context=0.5, search_radius=24, stride=4,
                 feature="hog", distance=None):
    """Find the window of the reference half most similar to the box's surrounding ring.

    Parameters
    ----------
    lesion_gray, reference_gray : (H, W) uint8
        The half with the detection and its contralateral reference half (sizes may
        differ by a few pixels).
    box : (x1, y1, x2, y2) float
        Detected box in lesion-half pixels.
    context : float
        Ring width as a fraction of the box width/height (each side).
    search_radius : int
        Largest |dx| and |dy| searched, pixels.
    stride : int
        Step between searched offsets, pixels.
    feature : {'hog', 'phash', 'lbp', 'canny', 'raw'}
    distance : str or None
        None picks DEFAULT_DISTANCE[feature]; nonsensical pairs raise (see VALID_DISTANCES).

    Returns
    -------
    Match
    """
    match, _, _ = _search_fast(lesion_gray, reference_gray, box, context, search_radius,
                               stride, feature, distance)
    return match


def _search_fast(lesion_gray, reference_gray, box, context, search_radius, stride, feature,
                 distance):
    """Fast search; returns (Match, offsets, distances) like find_similar_loop(return_all)."""
    distance = check_pair(feature, distance)
    plan = _plan(lesion_gray, reference_gray, box, context, search_radius, stride)
    ox1, oy1, ox2, oy2 = plan.outer
    masked_t = apply_mask(lesion_gray[oy1:oy2, ox1:ox2], plan.mask)
    dys = np.unique(plan.offsets[:, 0])
    dxs = np.unique(plan.offsets[:, 1])
    region = reference_gray[oy1 + dys[0]:oy2 + dys[-1], ox1 + dxs[0]:ox2 + dxs[-1]]
    region = region.astype(np.float64)
    wys, wxs = dys - dys[0], dxs - dxs[0]
    ds = similar_fast.distances(feature, distance, masked_t, plan.mask, region, wys, wxs)
    best = pick_best(ds, plan.offsets)
    match = _match(plan, best, ds[best])[2]
    return match, plan.offsets, ds
