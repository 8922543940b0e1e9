"""GluonCV's SSD-style random crop with IoU constraints, with the IoU tests done in one call.

``YOLO3DefaultTrainTransform`` crops every training image with
``gluoncv.data.transforms.experimental.bbox.random_crop_with_constraints``: for each of six
IoU constraints it draws up to 50 crops and calls ``bbox_iou`` on each until one fits. On
phantom halves at 128 px that was three quarters of the loader's time per image (profiled:
~65 ``bbox_iou`` calls of a few microseconds of arithmetic and ~60 of numpy overhead each).

:func:`random_crop_with_constraints` returns what GluonCV's returns and leaves Python's
``random`` and numpy's generators in the same state: per constraint it draws all 50 crops
from a saved state, tests them in one array operation with GluonCV's own arithmetic, and
then replays the state and the draws up to the first crop that fits, as the original loop
would have stopped there (tests/test_fast_crop.py compares both on random boxes and sizes).
That still draws 300 crops an image; :func:`sample_crop_with_constraints` draws from the
same distribution lazily, from numpy's generator, for a few percent of the time (the CPU
loader's default); it also skips the arithmetic of an IoU range that no drawn crop can reach
(:func:`_iou_upper_bound`; most of them, on small lesions), drawing its numbers all the same.
"""
import math
import random

import numpy as np

DEFAULT_CONSTRAINTS = ((0.1, None), (0.3, None), (0.5, None), (0.7, None), (0.9, None),
                       (None, 1))


def _randbelow(n, _getrandbits=random.getrandbits):
    """``random.randrange(n)`` as CPython computes it: ``n.bit_length()`` random bits,
    redrawn while ``>= n``."""
    if n <= 0:
        raise ValueError("empty range for randrange()")
    k = n.bit_length()
    r = _getrandbits(k)
    while r >= n:
        r = _getrandbits(k)
    return r


def _draw(rng_draws, w, h, min_scale, max_scale, max_aspect_ratio, _random=random.random):
    """One crop exactly as GluonCV draws it: ``random.uniform`` twice (``a + (b - a) *
    random()``), ``random.randrange`` twice (:func:`_randbelow`), spelled out, which takes a
    third of the time of the four library calls. ``math.sqrt`` and ``np.sqrt`` are both
    IEEE-correctly rounded, so the sizes are the same integers."""
    scale = min_scale + (max_scale - min_scale) * _random()
    lo = max(1 / max_aspect_ratio, scale * scale)
    aspect_ratio = lo + (min(max_aspect_ratio, 1 / (scale * scale)) - lo) * _random()
    crop_h = int(h * scale / math.sqrt(aspect_ratio))
    crop_w = int(w * scale * math.sqrt(aspect_ratio))
    crop_t = _randbelow(int(h) - crop_h)
    crop_l = _randbelow(int(w) - crop_w)
    rng_draws.append((crop_l, crop_t, crop_l + crop_w, crop_t + crop_h))


def _iou_with_crops(bbox, crops):
    """``gluoncv.utils.bbox_iou(bbox, crop[None])`` for every crop at once: ``(T, N)``, in
    the same dtypes (float32 box areas, integer crop areas), so every decision is the same."""
    a = bbox[None, :, :4]
    b = crops[:, None, :]
    tl = np.maximum(a[..., :2], b[..., :2])
    br = np.minimum(a[..., 2:4], b[..., 2:4])
    area_i = (br - tl).prod(axis=2) * (tl < br).all(axis=2)
    area_a = (a[..., 2:4] - a[..., :2]).prod(axis=2)
    area_b = (b[..., 2:4] - b[..., :2]).prod(axis=2)
    return area_i / (area_a + area_b - area_i)


def random_crop_with_constraints(bbox, size, min_scale=0.3, max_scale=1, max_aspect_ratio=2,
                                 constraints=None, max_trial=50):
    """Same arguments, result and random-number use as GluonCV's function of that name.

    Parameters
    ----------
    bbox : ndarray ``(N, 4+)``
        ``x1, y1, x2, y2`` and extra columns (kept).
    size : (width, height)

    Returns
    -------
    (ndarray ``(M, 4+)``, (x_offset, y_offset, width, height))
    """
    from gluoncv.data.transforms.bbox import crop as bbox_crop

    constraints = DEFAULT_CONSTRAINTS if constraints is None else constraints
    w, h = size
    candidates = [(0, 0, w, h)]
    for min_iou, max_iou in constraints:
        min_iou = -np.inf if min_iou is None else min_iou
        max_iou = np.inf if max_iou is None else max_iou
        if len(bbox) == 0:
            crops = []
            _draw(crops, w, h, min_scale, max_scale, max_aspect_ratio)
            left, top, right, bottom = crops[0]
            return bbox, (left, top, right - left, bottom - top)
        state = random.getstate()
        crops = []
        for _ in range(max_trial):
            _draw(crops, w, h, min_scale, max_scale, max_aspect_ratio)
        iou = _iou_with_crops(np.asarray(bbox), np.array(crops))
        fits = (min_iou <= iou.min(axis=1)) & (iou.max(axis=1) <= max_iou)
        if fits.any():
            k = int(np.argmax(fits))
            # the original loop stopped after trial k: leave the generator there too
            random.setstate(state)
            for _ in range(k + 1):
                _draw([], w, h, min_scale, max_scale, max_aspect_ratio)
            left, top, right, bottom = crops[k]
            candidates.append((left, top, right - left, bottom - top))
    while candidates:
        crop = candidates.pop(np.random.randint(0, len(candidates)))
        new_bbox = bbox_crop(bbox, crop, allow_outside_center=False)
        if new_bbox.size < 1:
            continue
        return new_bbox, (crop[0], crop[1], crop[2], crop[3])
    return bbox, (0, 0, w, h)


def _draw_crops(n, w, h, min_scale, max_scale, max_aspect_ratio, rng):
    """``n`` crops drawn as GluonCV draws one (scale, then aspect ratio, then top and left
    offsets, each uniform), all at once from numpy's generator ``rng``: ``(n, 4)`` int64
    ``left, top, right, bottom``. ``floor(u * m)`` stands for ``randrange(m)`` (uniform to
    within 2**-53 for image sizes), and gives 0 for an empty range, where ``randrange``
    would raise."""
    return _crops_from(rng.random_sample((n, 4)), w, h, min_scale, max_scale, max_aspect_ratio)


def _crops_from(u, w, h, min_scale, max_scale, max_aspect_ratio):
    """The crops of :func:`_draw_crops` made from its uniforms ``u`` (``(n, 4)``)."""
    left, top, crop_w, crop_h = _crop_sides(u, w, h, min_scale, max_scale, max_aspect_ratio)
    return np.stack([left, top, left + crop_w, top + crop_h], axis=1)


def _crop_sides(u, w, h, min_scale, max_scale, max_aspect_ratio):
    """``left, top, width, height`` (``(n,)`` int64 columns) of the crops made from ``u``, as
    GluonCV draws one (see :func:`_draw_crops`)."""
    scale = min_scale + (max_scale - min_scale) * u[:, 0]
    lo = np.maximum(1 / max_aspect_ratio, scale * scale)
    aspect_ratio = lo + (np.minimum(max_aspect_ratio, 1 / (scale * scale)) - lo) * u[:, 1]
    root = np.sqrt(aspect_ratio)
    crop_h = (h * scale / root).astype(np.int64)
    crop_w = (w * scale * root).astype(np.int64)
    top = (u[:, 2] * (int(h) - crop_h)).astype(np.int64)
    left = (u[:, 3] * (int(w) - crop_w)).astype(np.int64)
    return left, top, crop_w, crop_h


def _first_fits(u, boxes, w, h, min_scale, max_scale, max_aspect_ratio, min_iou, max_iou):
    """Which crops of :func:`_crops_from` (``u``) fit ``min_iou <= IoU <= max_iou`` with every
    box, and the crops' ``left, top, right, bottom`` columns: the decisions of
    :func:`_crops_from` and :func:`_iou_with_crops` (with the same dtypes: box areas in the
    boxes' dtype, integer crop areas, the rest float64), in a third fewer array operations on
    ``(trials, boxes)`` columns instead of ``(trials, boxes, 2)`` blocks.
    tests/test_fast_crop.py compares IoUs, decisions and crops bit for bit."""
    left, top, crop_w, crop_h = _crop_sides(u, w, h, min_scale, max_scale, max_aspect_ratio)
    right, bottom = left + crop_w, top + crop_h
    iou = _iou_columns(boxes, left, top, right, bottom, crop_w * crop_h)
    fits = (min_iou <= iou.min(axis=1)) & (iou.max(axis=1) <= max_iou)
    return fits, (left, top, right, bottom)


def _iou_columns(boxes, left, top, right, bottom, crop_area):
    """:func:`_iou_with_crops` from columns: ``(T, N)`` IoUs of crops (``(T,)`` integer
    columns) with ``boxes`` (``(N, 4+)``)."""
    x1, y1, x2, y2 = boxes[:, :4].T.astype(np.float64)
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iw = np.minimum(x2, right[:, None]) - np.maximum(x1, left[:, None])
    ih = np.minimum(y2, bottom[:, None]) - np.maximum(y1, top[:, None])
    inter = iw * ih * ((iw > 0) & (ih > 0))
    return inter / ((box_area + crop_area[:, None]) - inter)


def _iou_upper_bound(boxes, w, h, min_scale, max_scale, max_aspect_ratio=2):
    """An upper bound on the smallest IoU of ``boxes`` with any crop :func:`_draw_crops` can
    draw: a minimum IoU above it is unreachable, and its trials need not be tested.

    IoU is at most ``min(a, A) / max(a, A)`` for box area ``a`` and crop area ``A``, and a
    drawn crop's area lies in ``[w h min_scale**2 - (w + h), w h max_scale**2]`` (``w h s**2``
    before the integer truncation of each side, which removes less than one pixel per side,
    and ``s sqrt(ar)``, ``s / sqrt(ar)`` are at most 1 within GluonCV's aspect-ratio bounds).
    The smallest box bound is returned with a margin of 1e-6 for float32 box areas; ``inf``
    (nothing judged) when a box has no positive finite area, or for parameters outside
    ``0 < min_scale <= max_scale <= 1 <= max_aspect_ratio``, where that argument fails."""
    if not 0 < min_scale <= max_scale <= 1 <= max_aspect_ratio:
        return np.inf
    a = (boxes[:, 2].astype(np.float64) - boxes[:, 0]) * (boxes[:, 3].astype(np.float64)
                                                        - boxes[:, 1])
    if not (np.isfinite(a).all() and (a > 0).all()):
        return np.inf
    a_min = max(w * h * min_scale * min_scale - (w + h), 0.0)
    a_max = w * h * max_scale * max_scale
    small, large = a.min(), a.max()
    upper = min(small / a_min if small < a_min else 1.0, a_max / large if large > a_max else 1.0)
    return upper * (1 + 1e-6)


def sample_crop_with_constraints(bbox, size, min_scale=0.3, max_scale=1, max_aspect_ratio=2,
                                 constraints=None, max_trial=50, rng=np.random):
    """A crop from the same distribution as GluonCV's ``random_crop_with_constraints``, for a
    few percent of its cost, from numpy's generator alone.

    GluonCV draws up to ``max_trial`` crops for every constraint (300 draws an image with the
    defaults, most of them for IoU ranges a small lesion can never meet), keeps each
    constraint's first crop that fits as a candidate beside the whole image, and returns the
    first candidate, in a uniformly random order, whose crop keeps a box. Here the same
    slots (the whole image, then one per constraint) are visited in a uniformly random order
    and a constraint's trials are drawn, all at once, only when its slot comes up: its first
    fitting crop has the same distribution, a slot without one is skipped as GluonCV never
    lists it, and the first slot whose crop keeps a box is uniform among GluonCV's
    candidates that do (tests/test_fast_crop.py compares both distributions). The random
    stream differs from GluonCV's: use :func:`random_crop_with_constraints` to reproduce its
    draws exactly.

    Parameters
    ----------
    bbox : ndarray ``(N, 4+)``
        ``x1, y1, x2, y2`` and extra columns (kept).
    size : (width, height)
    rng : numpy.random.RandomState or the ``numpy.random`` module

    Returns
    -------
    (ndarray ``(M, 4+)``, (x_offset, y_offset, width, height))
    """
    from gluoncv.data.transforms.bbox import crop as bbox_crop

    constraints = DEFAULT_CONSTRAINTS if constraints is None else constraints
    w, h = size
    if len(bbox) == 0:  # GluonCV returns one drawn crop
        left, top, right, bottom = (int(v) for v in _draw_crops(
            1, w, h, min_scale, max_scale, max_aspect_ratio, rng)[0])
        return bbox, (left, top, right - left, bottom - top)
    boxes = np.asarray(bbox)
    reachable = _iou_upper_bound(boxes, w, h, min_scale, max_scale, max_aspect_ratio)
    slots = [None] + list(constraints)  # None: the whole image
    while slots:
        limits = slots.pop(rng.randint(0, len(slots)))
        if limits is None:
            crop = (0, 0, w, h)
        else:
            min_iou = -np.inf if limits[0] is None else limits[0]
            max_iou = np.inf if limits[1] is None else limits[1]
            # drawn whether or not a trial can fit, so skipping keeps the stream the same
            u = rng.random_sample((max_trial, 4))
            if min_iou > reachable:
                continue  # no trial can fit: skip the arithmetic (most of the crop's time)
            fits, sides = _first_fits(u, boxes, w, h, min_scale, max_scale,
                                      max_aspect_ratio, min_iou, max_iou)
            if not fits.any():
                continue
            k = int(np.argmax(fits))
            left, top, right, bottom = (int(v[k]) for v in sides)
            crop = (left, top, right - left, bottom - top)
        new_bbox = bbox_crop(bbox, crop, allow_outside_center=False)
        if new_bbox.size < 1:
            continue
        return new_bbox, crop
    return bbox, (0, 0, w, h)
