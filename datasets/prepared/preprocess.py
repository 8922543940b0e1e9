"""Border crop, midline split and box bookkeeping for dual-panel screenshots.

Notes 002 ("对图片的处理"): (1) find the top edge by scanning down the column at W/4 for the
first pixel above a threshold, the left edge by scanning right along the row at 3H/4, and
the bottom/right edges likewise from the other side; crop and shift the labels. (2) Split
at the vertical midline; a half that holds strain boxes is a sample, with its boxes
shifted into half coordinates.

Made robust here: each edge is scanned along several lines (a 5-pixel-wide strip each, so
one dark speckle does not stop the scan); an edge must be followed by a solid stretch of
panel (scanner text and scale ticks are thin), and the median of the lines' hits is the
edge, so text crossing a few lines does not move it; when too few lines hit
or the crop would be implausibly small, the full image is used and the reason returned.
Boxes are clipped to the image, the crop and their half, and every clip or drop is
reported with its reason (nothing is dropped silently).
"""
import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)

BORDER_THRESHOLD = 20       # grey level above which a pixel is panel, not border
# Scan lines as fractions of the size: the notes' W/4 and 3H/4 plus neighbours on both panels.
COLUMN_FRACS = (0.15, 0.25, 0.35, 0.65, 0.75, 0.85)
ROW_FRACS = (0.35, 0.5, 0.65, 0.75)
MIN_CROP_FRAC = 0.3         # a crop narrower/lower than this fraction of the image is refused
STRIP = 2                   # half-width of each scan strip in pixels
MIN_RUN, RUN_FRAC = 16, 0.04  # an edge is followed by max(16 px, 4% of the size) of panel


def _first_above(profile, threshold, run):
    """First index where at least 90% of the next ``run`` values exceed ``threshold``.

    A panel is a solid bright region; scanner text and scale ticks are thin strokes with
    black between them, so a short bright stretch does not count as the edge.
    """
    bright = (profile > threshold).astype(np.int32)
    run = max(1, min(run, bright.size))
    sums = np.convolve(bright, np.ones(run, np.int32), mode="valid")
    hits = np.flatnonzero((sums >= 0.9 * run) & (bright[:sums.size] == 1))
    return int(hits[0]) if hits.size else None


def find_crop(grey, threshold=BORDER_THRESHOLD, column_fracs=COLUMN_FRACS,
              row_fracs=ROW_FRACS, min_frac=MIN_CROP_FRAC):
    """Rectangle of the panels inside the black border.

    Parameters
    ----------
    grey : numpy.ndarray
        ``(H, W)`` uint8 image (or ``(H, W, 3)``; the channel maximum is used).
    threshold : int
        Border pixels are at most this bright.
    column_fracs, row_fracs : sequence of float
        Scan-line positions as fractions of the width (columns, scanned down and up) and of
        the height (rows, scanned right and left).
    min_frac : float
        Refuse crops smaller than this fraction of the image in either direction.

    Returns
    -------
    rect : tuple of int
        ``(x0, y0, x1, y1)``, exclusive ``x1``/``y1``; the full image on fallback.
    info : dict
        ``{"method": "scan"|"full", "reason": str or None, "hits": {edge: [positions]}}``.
    """
    if grey.ndim == 3:
        # channel maximum; numpy's max over a length-3 last axis is ~30x slower than this
        grey = cv2.max(cv2.max(grey[:, :, 0], grey[:, :, 1]), grey[:, :, 2])
    h, w = grey.shape
    hits = {"top": [], "bottom": [], "left": [], "right": []}
    # A panel edge must be followed by this many mostly-bright pixels (text is shorter).
    run_v, run_h = max(MIN_RUN, round(RUN_FRAC * h)), max(MIN_RUN, round(RUN_FRAC * w))
    for f in column_fracs:
        c = int(round(f * (w - 1)))
        strip = grey[:, max(c - STRIP, 0):c + STRIP + 1].max(axis=1)
        top = _first_above(strip, threshold, run_v)
        if top is not None:
            hits["top"].append(top)
            hits["bottom"].append(h - _first_above(strip[::-1], threshold, run_v))
    for f in row_fracs:
        r = int(round(f * (h - 1)))
        strip = grey[max(r - STRIP, 0):r + STRIP + 1, :].max(axis=0)
        left = _first_above(strip, threshold, run_h)
        if left is not None:
            hits["left"].append(left)
            hits["right"].append(w - _first_above(strip[::-1], threshold, run_h))
    info = {"method": "scan", "reason": None, "hits": hits}
    if len(hits["top"]) * 2 < len(column_fracs) or len(hits["left"]) * 2 < len(row_fracs):
        info.update(method="full", reason=(f"only {len(hits['top'])}/{len(column_fracs)} columns "
                                           f"and {len(hits['left'])}/{len(row_fracs)} rows found "
                                           f"pixels above {threshold}"))
        return (0, 0, w, h), info
    x0, x1 = int(np.median(hits["left"])), int(np.median(hits["right"]))
    y0, y1 = int(np.median(hits["top"])), int(np.median(hits["bottom"]))
    if x1 - x0 < min_frac * w or y1 - y0 < min_frac * h:
        info.update(method="full", reason=(f"scan found {x1 - x0}x{y1 - y0} px of a {w}x{h} image "
                                           f"(under {min_frac:.0%}); kept the full image"))
        return (0, 0, w, h), info
    return (x0, y0, x1, y1), info


def panel_rects(crop, split=True):
    """Half rectangles of a crop.

    Parameters
    ----------
    crop : tuple of int
        ``(x0, y0, x1, y1)`` in source pixels, exclusive ends.
    split : bool
        Split at the vertical midline (``x0 + (x1 - x0) // 2``).

    Returns
    -------
    dict
        ``{"L": rect, "R": rect}`` or ``{"full": crop}``.
    """
    x0, y0, x1, y1 = crop
    if not split:
        return {"full": tuple(crop)}
    mid = x0 + (x1 - x0) // 2
    return {"L": (x0, y0, mid, y1), "R": (mid, y0, x1, y1)}


def clip_box(box, rect):
    """Intersection of ``box`` with ``rect`` (both ``[x1, y1, x2, y2]``), or None if empty."""
    x1, y1 = max(box[0], rect[0]), max(box[1], rect[1])
    x2, y2 = min(box[2], rect[2]), min(box[3], rect[3])
    if x2 <= x1 or y2 <= y1:
        return None
    return [float(x1), float(y1), float(x2), float(y2)]


def assign_boxes(objects, image_size, crop, halves, min_side=1.0):
    """Put each object into its half, in half coordinates; report every clip and drop.

    Parameters
    ----------
    objects : list of dict
        ``{"box": [x1, y1, x2, y2] source pixels, ...}`` (other keys are kept).
    image_size : tuple of int
        ``(W, H)`` of the source.
    crop : tuple of int
        The border crop ``(x0, y0, x1, y1)``.
    halves : dict
        From :func:`panel_rects`.
    min_side : float
        Boxes with a side shorter than this after clipping are dropped.

    Returns
    -------
    per_half : dict
        Side -> list of objects with ``"box"`` in that half's coordinates and
        ``"source_box"`` the (clipped) source box.
    events : list of dict
        ``{"kind": "clipped"|"dropped", "side", "box": original source box, "code", "reason"}``;
        ``code`` is one of zero_area, outside_image, outside_crop, outside_half, too_small,
        clipped.
    """
    w, h = image_size
    per_half = {side: [] for side in halves}
    events = []
    for obj in objects:
        box = [float(v) for v in obj["box"]]
        if not (box[2] > box[0] and box[3] > box[1]):
            size = f"{box[2] - box[0]:g} x {box[3] - box[1]:g} px"
            events.append({"kind": "dropped", "side": "", "box": box, "code": "zero_area",
                           "reason": f"zero area ({size})"})
            continue
        reasons = []
        inside = clip_box(box, (0, 0, w, h))
        if inside is None:
            events.append({"kind": "dropped", "side": "", "box": box, "code": "outside_image",
                           "reason": f"wholly outside the {w}x{h} image"})
            continue
        if inside != box:
            reasons.append("extends past the image")
        in_crop = clip_box(inside, crop)
        if in_crop is None:
            events.append({"kind": "dropped", "side": "", "box": box, "code": "outside_crop",
                           "reason": f"outside the border crop {list(crop)}"})
            continue
        if in_crop != inside:
            reasons.append(f"extends past the border crop {list(crop)}")
        cx = (in_crop[0] + in_crop[2]) / 2
        side = next((s for s, r in halves.items() if r[0] <= cx < r[2]), list(halves)[-1])
        rect = halves[side]
        final = clip_box(in_crop, rect)
        if final is None:
            events.append({"kind": "dropped", "side": side, "box": box, "code": "outside_half",
                           "reason": "nothing left inside its half"})
            continue
        if final != in_crop:
            reasons.append("crosses the midline")
        if final[2] - final[0] < min_side or final[3] - final[1] < min_side:
            events.append({"kind": "dropped", "side": side, "box": box, "code": "too_small",
                           "reason": f"under {min_side:g} px after clipping "
                                     f"({'; '.join(reasons)})"})
            continue
        if reasons:
            events.append({"kind": "clipped", "side": side, "box": box, "code": "clipped",
                           "reason": "; ".join(reasons) + f" -> {[round(v, 2) for v in final]}"})
        ox, oy = rect[0], rect[1]
        per_half[side].append({**obj, "source_box": final,
                               "box": [final[0] - ox, final[1] - oy, final[2] - ox, final[3] - oy]})
    return per_half, events
