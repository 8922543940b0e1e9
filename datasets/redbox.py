"""Red rectangles burnt into a screenshot -> boxes, and the ink painted out.

Notes 002 ("对标签的处理" 1): convert BGR to YCrCb, take the Cr channel (red minus luma),
threshold it, find contours, drop small ones, take each outline's bounding rectangle.
This module keeps that recipe and makes it exact and robust:

* **Stroke centre, not outer edge.** A doctor's box is the rectangle's nominal corners (what
  ``cv2.rectangle`` was given); the ink spreads half a stroke to each side (cv2 thickness 2
  and 3 paint 3 and 5 pixels). Each box is measured from the enclosed interior (a
  background region the ink surrounds) plus the stroke width on each side, so its edges sit
  on the stroke centre lines. JPEG chroma blur widens the mask symmetrically and cancels.
* **Nested, touching and crossing rectangles.** Every interior proposes its four stroke
  lines. Within one ink component every rectangle whose four edges are inked is a
  candidate; a candidate is dropped when an inked line runs right across it (two touching
  boxes are not also one big box) or when lines cross through two of its corners (the
  overlap of two crossing boxes is not a box). Nested boxes are separate components or
  share lines; both come out.
* **Open outlines** (a thin stroke broken by compression at a corner) fall back to the
  stroke centres found from the ink's row and column profiles, with a note.
* **Sub-pixel help from luma.** JPEG keeps colour at half resolution, so a 1-px stroke's
  chroma only places it to +-0.5 px; along the stroke the (full-resolution) luma is the
  ink's constant grey while beside it is speckle, which pins the stroke to its pixels.
* **Ink removal.** Everything reddish (a lower Cr threshold than detection) plus a margin is
  filled by mirroring the scene on both sides in across the stroke (diffusion inpainting such as
  ``cv2.inpaint`` leaves a smooth frame on speckle, itself a cue a detector could learn),
  and a ring around it is set to its luma, so no chroma halo from JPEG's subsampled colour
  survives in a training image.
"""
import logging
import re

import cv2
import numpy as np

log = logging.getLogger(__name__)

CR_THRESHOLD = 150   # grey pixels have Cr = 128; saturated red has Cr ~ 255
CR_INK = 138         # lower threshold for what gets painted out (JPEG halo)
MIN_SIDE = 6         # boxes (and ink components) smaller than this are noise, in pixels
GROUP = 9            # ink closer than this (px) is analysed together
MAX_LINES = 24       # per component; more means something other than boxes
INPAINT_RADIUS = 3   # cv2.inpaint neighbourhood, px
RATIO = 2.0          # luma must vary this much less along a pixel line to call it ink


def cr_channel(img):
    """Cr channel of a BGR uint8 image (OpenCV YCrCb; grey = 128)."""
    return cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb)[:, :, 1]


def red_mask(img, threshold=CR_THRESHOLD, close=5):
    """Binary uint8 mask (0/1) of red ink: Cr above ``threshold``, small gaps closed.

    JPEG's 2x2 chroma blocks weaken a 1-px stroke where it turns a corner, which can break
    the outline; a ``close`` x ``close`` closing rejoins it. Closing leaves straight stroke
    edges where they are, so the measured centre lines do not move.
    """
    mask = (cr_channel(img) > threshold).astype(np.uint8)
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((close, close), np.uint8))


def _leading_ones(block):
    """Length of the leading run of ones in each row of a 2-D 0/1 array."""
    if block.shape[1] == 0:
        return np.zeros(block.shape[0], int)
    first_zero = np.argmin(block, axis=1)
    return np.where(block.all(axis=1), block.shape[1], first_zero)


def _side_thickness(mask, hole, x0, y0, x1, y1):
    """Median ink run outward from each side of a hole with pixel bbox [x0..x1] x [y0..y1].

    Only rows/columns where the hole really reaches that side count (holes can be L- or
    C-shaped when boxes overlap). Returns (left, top, right, bottom); 0 where unknown.
    """
    h, w = mask.shape
    rows_l = y0 + np.flatnonzero(hole[y0:y1 + 1, x0]) if x0 > 0 else np.array([], int)
    rows_r = y0 + np.flatnonzero(hole[y0:y1 + 1, x1]) if x1 < w - 1 else np.array([], int)
    cols_t = x0 + np.flatnonzero(hole[y0, x0:x1 + 1]) if y0 > 0 else np.array([], int)
    cols_b = x0 + np.flatnonzero(hole[y1, x0:x1 + 1]) if y1 < h - 1 else np.array([], int)
    blocks = (mask[rows_l, x0 - 1::-1] if rows_l.size else None,
              mask[y0 - 1::-1, cols_t].T if cols_t.size else None,
              mask[rows_r, x1 + 1:] if rows_r.size else None,
              mask[y1 + 1:, cols_b].T if cols_b.size else None)
    out = []
    for block in blocks:
        runs = _leading_ones(block) if block is not None else np.array([], int)
        runs = runs[runs > 0]
        out.append(float(np.median(runs)) if runs.size else 0.0)
    return out


def _cluster(values, tol=1.5):
    """Merge 1-D positions closer than ``tol``.

    Returns the sorted cluster means and, for each input value, its cluster mean.
    """
    order = np.argsort(values, kind="stable")
    groups = []
    for i in order:
        if groups and values[i] - values[groups[-1][-1]] <= tol:
            groups[-1].append(i)
        else:
            groups.append([i])
    means, of = [], [0.0] * len(values)
    for g in groups:
        m = float(np.mean([values[i] for i in g]))
        means.append(m)
        for i in g:
            of[i] = m
    return means, of


def _covered(band, a, b, axis_pos, horizontal, frac=0.9):
    """Whether the inked band covers the line at ``axis_pos`` from ``a`` to ``b``."""
    p = int(round(axis_pos))
    lo, hi = int(round(a)), int(round(b))
    if horizontal:
        if not 0 <= p < band.shape[0]:
            return False
        seg = band[p, max(lo, 0):min(hi, band.shape[1] - 1) + 1]
    else:
        if not 0 <= p < band.shape[1]:
            return False
        seg = band[max(lo, 0):min(hi, band.shape[0] - 1) + 1, p]
    return seg.size > 0 and seg.mean() >= frac


def _extends(band, x, y, dx, dy, reach):
    """Whether ink continues from corner (x, y) in direction (dx, dy) for ``reach`` pixels."""
    h, w = band.shape
    x, y = int(round(x)), int(round(y))
    for k in range(1, reach + 1):
        xx, yy = x + dx * k, y + dy * k
        if not (0 <= xx < w and 0 <= yy < h) or not band[yy, xx]:
            return False
    return True


def _component_boxes(mask, band, holes, thick):
    """Rectangles of one group of ink from its holes (see the module docstring)."""
    raw_x, raw_y = [], []
    for (x0, y0, x1, y1), (tl, tt, tr, tb) in holes:
        raw_x += [x0 - (tl + 1) / 2, x1 + (tr + 1) / 2]
        raw_y += [y0 - (tt + 1) / 2, y1 + (tb + 1) / 2]
    xs, x_of = _cluster(raw_x)
    ys, y_of = _cluster(raw_y)
    # Each hole's (left, top, right, bottom) stroke lines, as cluster positions.
    sides = [(x_of[2 * i], y_of[2 * i], x_of[2 * i + 1], y_of[2 * i + 1])
             for i in range(len(holes))]
    if len(xs) > MAX_LINES or len(ys) > MAX_LINES:
        # Not a handful of boxes: keep each interior's own rectangle.
        return [list(s) for s in sides]
    cands = []
    for i, xa in enumerate(xs):
        for xb in xs[i + 1:]:
            for j, ya in enumerate(ys):
                for yb in ys[j + 1:]:
                    if (_covered(band, xa, xb, ya, True) and _covered(band, xa, xb, yb, True)
                            and _covered(band, ya, yb, xa, False)
                            and _covered(band, ya, yb, xb, False)):
                        cands.append((xa, ya, xb, yb))
    reach = int(np.ceil(thick / 2)) + 3
    boxes = []
    for xa, ya, xb, yb in cands:
        # Each edge must be the stroke line of an interior inside the candidate: a line of
        # a neighbouring box that merely runs inside this box's thick stroke is not an edge.
        inside = [s for s in sides if xa <= s[0] and s[2] <= xb and ya <= s[1] and s[3] <= yb]
        if not (any(s[0] == xa for s in inside) and any(s[1] == ya for s in inside)
                and any(s[2] == xb for s in inside) and any(s[3] == yb for s in inside)):
            continue
        # An inked line from edge to edge inside that stops at the edges: this is two boxes
        # side by side. (A line that runs on through both edges belongs to a crossing box.)
        if any(xa + thick < x < xb - thick and _covered(band, ya, yb, x, False)
               and not (_extends(band, x, ya, 0, -1, reach) and _extends(band, x, yb, 0, 1, reach))
               for x in xs) or \
                any(ya + thick < y < yb - thick and _covered(band, xa, xb, y, True)
                    and not (_extends(band, xa, y, -1, 0, reach)
                             and _extends(band, xb, y, 1, 0, reach))
                    for y in ys):
            continue
        # Lines crossing right through >= 2 corners: the overlap of two crossing boxes.
        crossings = sum(_extends(band, cx, cy, dx, 0, reach)
                        and _extends(band, cx, cy, 0, dy, reach)
                        for cx, cy, dx, dy in ((xa, ya, -1, -1), (xb, ya, 1, -1),
                                               (xa, yb, -1, 1), (xb, yb, 1, 1)))
        if crossings >= 2:
            continue
        boxes.append([xa, ya, xb, yb])
    return boxes


def _outline_box(mask, frac=0.5):
    """Box of an outline that encloses nothing (broken at a corner), from its projections.

    The left stroke is the leftmost run of columns inked over at least ``frac`` of the
    component's height (likewise the other three); each edge is that run's centre.
    Returns None when a side has no such run.
    """
    ys, xs = np.nonzero(mask)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    edges = []
    for counts, size in ((mask.sum(axis=0), h), (mask.sum(axis=1), w)):
        strong = np.flatnonzero(counts >= frac * size)
        if strong.size == 0:
            return None
        runs = np.split(strong, np.flatnonzero(np.diff(strong) > 1) + 1)
        if len(runs) < 2:
            return None
        edges.append((runs[0].mean(), runs[-1].mean()))
    (x1, x2), (y1, y2) = edges
    return [float(x1), float(y1), float(x2), float(y2)]


def _holes(mask):
    """Background regions enclosed by ink in a local mask: list of (rect, region mask).

    4-connected background is the dual of 8-connected ink. Regions touching the mask border
    are not enclosed; 1-px pinholes inside a blurred stroke are skipped.
    """
    h, w = mask.shape
    n, lab, stats, _ = cv2.connectedComponentsWithStats(1 - mask, connectivity=4)
    out = []
    for k in range(1, n):
        x, y, bw, bh, _ = stats[k]
        if x == 0 or y == 0 or x + bw == w or y + bh == h or bw < 2 or bh < 2:
            continue
        out.append(((x, y, x + bw - 1, y + bh - 1), lab == k))
    return out


def _analyse(mask, min_side):
    """Boxes (local coordinates) and notes for one group of nearby ink."""
    notes = []
    holes = [(r, _side_thickness(mask, hole, *r)) for r, hole in _holes(mask)]
    sides = [t for _, ts in holes for t in ts if t > 0]
    thick = (float(np.median(sides)) if sides
             else float(mask.sum()) / max(2.0 * sum(mask.shape), 1.0))
    # Interiors thinner than a stroke are gaps between two nearby boxes that JPEG's chroma
    # blur bridged at the ends, not boxes.
    holes = [(r, ts) for r, ts in holes if min(r[2] - r[0] + 1, r[3] - r[1] + 1) >= max(3.0, thick)]
    # A side much thicker than the rest is two strokes touching: use the median.
    holes = [(r, [t if 0 < t <= thick + 1.5 else thick for t in ts]) for r, ts in holes]
    boxes = []
    if holes:
        band = cv2.dilate(mask, np.ones((3, 3), np.uint8))  # +-1 px tolerance for line checks
        boxes = _component_boxes(mask, band, holes, thick)
    # Ink no box explains: an outline broken (at a corner, by compression) encloses nothing.
    explained = np.zeros_like(mask)
    for b in boxes:
        cv2.rectangle(explained, (int(round(b[0])), int(round(b[1]))),
                      (int(round(b[2])), int(round(b[3]))), 1, int(np.ceil(thick)) + 4)
    rest = mask & (1 - explained)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(
        cv2.dilate(rest, np.ones((9, 9), np.uint8)), connectivity=8)
    for k in range(1, n):
        part = rest * (lab == k)
        ys, xs = np.nonzero(part)
        if xs.size == 0:
            continue
        x0, y0, w, h = xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        if w < min_side or h < min_side:
            if w > 2 or h > 2:
                notes.append(f"ink at ({x0}, {y0}) {w}x{h} px dropped: smaller than {min_side} px")
            continue
        box = _outline_box(part)
        if box is None:
            notes.append(f"ink at ({x0}, {y0}) {w}x{h} px is not a box outline (no enclosed "
                         f"interior, no four strokes); no box")
            continue
        boxes.append(box)
        notes.append(f"ink at ({x0}, {y0}) {w}x{h} px encloses no interior (outline broken, "
                     f"e.g. at a corner); box from its stroke profiles")
    return boxes, notes, thick


def extract_red_boxes(img, threshold=CR_THRESHOLD, min_side=MIN_SIDE, refine=True):
    """Find red rectangles drawn on an image.

    Parameters
    ----------
    img : numpy.ndarray
        ``(H, W, 3)`` uint8 BGR.
    threshold : int
        Cr threshold for ink (grey is 128).
    min_side : int
        Boxes and ink components with a side below this many pixels are dropped.
    refine : bool
        Snap thin strokes to the pixels of constant luma (:func:`refine_boxes`).

    Returns
    -------
    boxes : list of list of float
        ``[x1, y1, x2, y2]`` on the stroke centre lines (the corners given to
        ``cv2.rectangle``), sorted top-to-bottom, left-to-right.
    notes : list of str
        Ink that was dropped or only approximated, and why (positions in image pixels).
    """
    full = red_mask(img, threshold)
    luma = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    # Ink within a few pixels forms one group, so a side cut off at two broken corners is
    # analysed with the rest of its box.
    groups = cv2.dilate(full, np.ones((GROUP, GROUP), np.uint8))
    n, comp, stats, _ = cv2.connectedComponentsWithStats(groups, connectivity=8)
    H, W = full.shape
    boxes, notes = [], []
    for g in range(1, n):
        gx, gy, gw, gh, _ = stats[g]
        x0, y0, x1, y1 = max(gx - 1, 0), max(gy - 1, 0), min(gx + gw + 1, W), min(gy + gh + 1, H)
        # Zero padding keeps the window's frame free of ink, so enclosed means enclosed.
        mask = np.pad(full[y0:y1, x0:x1] * (comp[y0:y1, x0:x1] == g), 1)
        local, local_notes, thick = _analyse(mask.astype(np.uint8), min_side)
        local = [[b[0] + x0 - 1, b[1] + y0 - 1, b[2] + x0 - 1, b[3] + y0 - 1] for b in local]
        boxes += refine_boxes(luma, local, thick) if refine else local
        notes += [_shift_note(m, x0 - 1, y0 - 1) for m in local_notes]
    kept = []
    for b in boxes:
        if b[2] - b[0] < min_side or b[3] - b[1] < min_side:
            notes.append(f"red box {[round(v, 1) for v in b]} dropped: smaller than {min_side} px")
        else:
            kept.append([float(v) for v in b])
    kept.sort(key=lambda b: (b[1], b[0]))
    return kept, notes


def _refine_edge(luma, pos, a, b, thick, vertical):
    """Settle a stroke centre line that the chroma mask leaves at a half pixel.

    JPEG stores colour at half resolution (4:2:0), so the chroma mask of a stroke that
    cv2 painted an odd number of pixels wide shows up one pixel wider, and its centre is
    only known to +-0.5 px. Luma is full resolution: along the stroke it is the ink's one
    grey level, beside it is the scene. Of the two pixel lines that the two hypotheses
    (centre ``pos - 0.5`` or ``pos + 0.5``) disagree on, the one whose luma varies far less
    along the edge is ink. Returns ``pos`` unchanged when the evidence is not clear.
    """
    if abs(pos - round(pos)) < 0.25:
        return pos  # an odd-width mask already centres on a pixel: nothing to settle
    lo, hi = int(round(a + thick / 2 + 1)), int(round(b - thick / 2 - 1))
    if hi - lo < 4:
        return pos
    c = int(np.floor(pos))                  # hypotheses: centre c or c + 1
    m = max(int(round(thick)) // 2 - 1, 0)  # half-width of the painted stroke
    first, second = c - m, c + m + 1        # ink under hypothesis c only / c + 1 only
    limit = luma.shape[1] if vertical else luma.shape[0]
    if first < 0 or second >= limit:
        return pos
    lines = luma[lo:hi, [first, second]] if vertical else luma[[first, second], lo:hi].T
    sd = lines.astype(np.float32).std(axis=0) + 0.5
    if sd[0] * RATIO <= sd[1]:
        return float(c)
    if sd[1] * RATIO <= sd[0]:
        return float(c + 1)
    return pos


def refine_boxes(luma, boxes, thick=3):
    """Apply :func:`_refine_edge` to the four edges of each box.

    Parameters
    ----------
    luma : numpy.ndarray
        ``(H, W)`` grey image (``cv2.COLOR_BGR2GRAY`` of the inked screenshot).
    boxes : list of [x1, y1, x2, y2]
        Stroke centre lines in image pixels.
    thick : float
        Stroke width in pixels as the chroma mask shows it.
    """
    out = []
    for x1, y1, x2, y2 in boxes:
        out.append([_refine_edge(luma, x1, y1, y2, thick, True),
                    _refine_edge(luma, y1, x1, x2, thick, False),
                    _refine_edge(luma, x2, y1, y2, thick, True),
                    _refine_edge(luma, y2, x1, x2, thick, False)])
    return out


def _shift_note(note, dx, dy):
    """Rewrite the '(x, y)' position in a local note into image pixels."""
    m = re.search(r"\((\d+), (\d+)\)", note)
    if not m:
        return note
    x, y = int(m.group(1)) + dx, int(m.group(2)) + dy
    return note[:m.start()] + f"({x}, {y})" + note[m.end():]


def _runs(mask, axis, reverse):
    """Per pixel, how many masked pixels run from it (inclusive) along an axis."""
    m = mask.astype(np.int32)
    if axis == 1:
        m = m.T
    if reverse:
        m = m[::-1]
    out = np.zeros_like(m)
    prev = np.zeros(m.shape[1], np.int32)
    for i in range(m.shape[0]):
        prev = (prev + 1) * m[i]
        out[i] = prev
    if reverse:
        out = out[::-1]
    return out.T if axis == 1 else out


def _reflect_fill(img, mask):
    """Fill a thin masked band with the scene mirrored in from both of its sides.

    Across the band (the axis along which it is thinner at that pixel), a masked pixel at
    distance d1 from one edge and d2 from the other takes the mirror images across both
    edges, weighted d2 : d1. Speckle texture carries on through the band and the two sides
    meet softly, where diffusion inpainting would leave a smooth frame a detector could
    learn. Mirror sources that fall outside the window or on ink fall back to the edge pixel.
    """
    h, w = mask.shape
    up, down = _runs(mask, 0, False), _runs(mask, 0, True)
    left, right = _runs(mask, 1, False), _runs(mask, 1, True)
    py, px = np.nonzero(mask)
    vertical_span = up[py, px] + down[py, px]
    horizontal_span = left[py, px] + right[py, px]
    across_y = vertical_span <= horizontal_span
    # edges (first unmasked pixel) on both sides, along the chosen axis
    e1 = np.where(across_y, py - up[py, px], px - left[py, px])
    e2 = np.where(across_y, py + down[py, px], px + right[py, px])
    pos = np.where(across_y, py, px)
    size = np.where(across_y, h, w)

    def sample(edge):
        src = 2 * edge - pos
        src = np.where((src >= 0) & (src < size), src, edge)
        src = np.clip(src, 0, size - 1)
        sy, sx = np.where(across_y, src, py), np.where(across_y, px, src)
        bad = mask[sy, sx] != 0
        ey = np.clip(np.where(across_y, edge, py), 0, h - 1)
        ex = np.clip(np.where(across_y, px, edge), 0, w - 1)
        sy, sx = np.where(bad, ey, sy), np.where(bad, ex, sx)
        return img[sy, sx].astype(np.float32), mask[sy, sx] == 0

    v1, ok1 = sample(e1)
    v2, ok2 = sample(e2)
    d1 = (pos - e1).astype(np.float32)
    d2 = (e2 - pos).astype(np.float32)
    w1 = np.where(ok1, d2, 0.0)
    w2 = np.where(ok2, d1, 0.0)
    total = w1 + w2
    value = np.where(total[:, None] > 0,
                     (v1 * w1[:, None] + v2 * w2[:, None]) / np.maximum(total, 1e-6)[:, None],
                     v1)
    out = img.copy()
    out[py, px] = np.clip(np.rint(value), 0, 255).astype(img.dtype)
    return out


def remove_ink(img, threshold=CR_INK, margin=1, ring=8, method="reflect"):
    """Paint out red ink.

    Parameters
    ----------
    img : numpy.ndarray
        ``(H, W, 3)`` uint8 BGR.
    threshold : int
        Cr threshold of what counts as ink (below the detection threshold, to catch JPEG's
        pink halo).
    margin : int
        Pixels added around the ink before filling.
    ring : int
        Width of the band around the filled area that is set to its luma (grey): JPEG keeps
        luma at full resolution, so there only the (subsampled) colour is wrong.
    method : {"reflect", "telea"}
        Fill by mirroring the texture beside the stroke (default), or OpenCV's Telea
        inpainting (smooth; leaves a visible blurred outline on speckle).

    Returns
    -------
    clean : numpy.ndarray
        Copy of ``img`` with the ink filled (``img`` itself if there is no ink).
    ink_pixels : int
        Number of pixels filled.
    """
    if method not in ("reflect", "telea"):
        raise ValueError(f"method={method!r}; want 'reflect' or 'telea'")
    ink = (cr_channel(img) > threshold).astype(np.uint8)
    if not ink.any():
        return img, 0
    k = 2 * margin + 1
    area = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    k = 2 * (margin + ring) + 1
    halo = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    clean = img.copy()
    cv2.copyTo(grey, halo, clean)       # the ring first: it is the fill's source
    # Each patch of ink in its own window (whole-frame passes cost ~30 ms per megapixel
    # even where there is nothing to do); every window also masks any neighbouring ink,
    # so red is never used as a source.
    n, _, stats, _ = cv2.connectedComponentsWithStats(area, connectivity=8)
    h, w = area.shape
    pad = 3 * INPAINT_RADIUS + 2 * margin + int(np.ceil(max(stats[1:, 2].min(),
                                                            stats[1:, 3].min()) / 4))
    pad = min(pad, 24)
    for c in range(1, n):
        x, y, bw, bh, _ = stats[c]
        x0, y0 = max(x - pad, 0), max(y - pad, 0)
        x1, y1 = min(x + bw + pad, w), min(y + bh + pad, h)
        win, m = clean[y0:y1, x0:x1], area[y0:y1, x0:x1]
        if method == "reflect":
            clean[y0:y1, x0:x1] = _reflect_fill(win, m)
        else:
            clean[y0:y1, x0:x1] = cv2.inpaint(win, m, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    return clean, int(area.sum())
