"""Red rectangles burnt into a screenshot -> boxes, and the ink painted out.

Notes 002 ("对标签的处理" 1): convert BGR to YCrCb, take the Cr channel (red minus luma),
threshold it, find contours, drop small ones, take each outline's bounding rectangle.
This module keeps that recipe and makes it exact and robust:

* **Stroke centre, not outer edge.** A doctor's box is the rectangle's nominal corners (what
  ``cv2.rectangle`` was given); the ink spreads half a stroke to each side (cv2 thickness 2
  and 3 paint 3 and 5 pixels). Each straight stroke (an opening with a long horizontal or
  vertical line keeps only strokes of that direction) gives a centre line: the middle of
  its band, or, for a band two strokes wide (two boxes' lines side by side), one line half
  a stroke inside each edge. JPEG chroma blur widens a band symmetrically and cancels.
* **Overlapping, nested, edge-sharing and touching rectangles.** Every rectangle on the grid
  of centre lines whose four edges are inked is a candidate reading. The same strokes can
  often be read several ways (two boxes side by side are also their union plus one of
  them), so the boxes are the set of candidates that explains every stroke at the least
  cost: one per box plus 0.75 per overlapping pair, which keeps a crossed box whole instead
  of cutting it at its neighbour's edges, and reads adjacent boxes as adjacent. Where the
  strokes allow several equally cheap readings (a 2 x 2 grid), the boxes that only touch
  are taken (:func:`_select`).
* **Open outlines** (a thin stroke broken by compression at a corner) fall back to the
  stroke centres found from the ink's row and column profiles, with a note.
* **Sub-pixel help from luma.** JPEG keeps colour at half resolution, so a 1-px stroke's
  chroma only places it to +-0.5 px; along the stroke the (full-resolution) luma is the
  ink's constant grey while beside it is speckle, which pins the stroke to its pixels.
* **Ink removal.** Everything reddish (a lower Cr threshold than detection) plus a margin is
  filled by mirroring the scene on both sides in across the stroke (diffusion inpainting such as
  ``cv2.inpaint`` leaves a smooth frame on speckle, itself a cue a detector could learn),
  and a ring around it is set to its luma, as far as JPEG's subsampled colour can reach
  (:data:`JPEG_CHROMA_REACH`), so no chroma halo survives in a training image.
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
#: How far (px, per axis) JPEG's colour error reaches from red ink: 4:2:0 JPEG codes colour
#: in 16 x 16 pixel blocks, so a stroke tints the whole block it touches (up to 15 px
#: away), and the decoder's upsampling one colour sample (2 px) beyond. The ring set to
#: luma around the ink was 8 px (round): in 335 of the 377 red-box screenshots of two demo
#: phantoms that left tinted pixels (535,829, up to 21 px from the ink), faint colour lines
#: 10-15 px outside each box, a cue marking where a doctor drew; with this reach, none.
JPEG_CHROMA_REACH = 16
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


def _cluster(values, tol=1.5):
    """Merge 1-D positions closer than ``tol``.

    Returns the sorted cluster means and, for each input value, its cluster index.
    """
    order = np.argsort(values, kind="stable")
    groups = []
    for i in order:
        if groups and values[i] - values[groups[-1][-1]] <= tol:
            groups[-1].append(i)
        else:
            groups.append([i])
    means, of = [], [0] * len(values)
    for k, g in enumerate(groups):
        means.append(float(np.mean([values[i] for i in g])))
        for i in g:
            of[i] = k
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


def stroke_width(mask):
    """Width of one stroke of the ink in a 0/1 mask, in pixels.

    Each ink pixel's shorter run (horizontal or vertical) is the width of the band it lies
    on: one stroke, or two strokes printed side by side, or a crossing. Where boxes share
    lines, double bands can be most of the ink, so the lower quartile, not the median.
    """
    runs = np.minimum(_runs(mask, 0, False) + _runs(mask, 0, True),
                      _runs(mask, 1, False) + _runs(mask, 1, True)) - 1
    vals = runs[mask > 0]
    return float(np.percentile(vals, 25, method="lower")) if vals.size else 1.0


def _lines(mask, thick, horizontal):
    """Centre lines of the straight strokes of one orientation: ``[(pos, a, b)]``.

    Opening with a line ``length`` px long keeps the strokes of that orientation and drops
    the crossing ones (a stroke, or two strokes side by side, is far narrower). Within each
    piece, rows inked over at least half the piece's width form a band; a band at least two
    strokes wide is two touching strokes. ``pos`` is the band's centre, ``[a, b]`` the stroke
    centre line's extent (the band's pixel extent less half a stroke at each end, where it
    overhangs the crossing stroke's centre).
    """
    length = int(2 * np.ceil(thick) + 6)
    m = mask if horizontal else mask.T
    kept = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((1, length), np.uint8))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(kept, connectivity=8)
    half = (thick - 1) / 2
    out = []
    for k in range(1, n):
        x, y, w, h, _ = stats[k]
        part = lab[y:y + h, x:x + w] == k
        counts = part.sum(axis=1)
        # Rows along most of the piece; a low bar, so that a short stroke lying against a
        # long one still counts, while the ragged rows JPEG leaves along an edge do not.
        strong = np.flatnonzero(counts >= 0.25 * counts.max())
        for rows in np.split(strong, np.flatnonzero(np.diff(strong) > 1) + 1):
            first, last = rows[0], rows[-1]
            band = part[first:last + 1]
            inked = band.any(axis=0)
            top = np.where(inked, band.argmax(axis=0), -1) + first
            bottom = last - np.where(inked, band[::-1].argmax(axis=0), -1)
            # Two strokes side by side make a band wider than one: their centres are half a
            # stroke inside the band's edges. Where the band is that wide both run; where it
            # is one stroke wide, the nearer one does. Strokes overlapping by more than half
            # print as one band whose centre is within half a stroke of both: one line.
            if last - first + 1 >= thick + max(1.5, thick / 2):
                upper, lower = first + half, last - half
                double = bottom - top + 1 > thick + 1.5
                nearer_upper = np.abs((top + bottom) / 2 - upper) <= np.abs((top + bottom) / 2 - lower)
                lines = [(upper, inked & (double | nearer_upper)),
                         (lower, inked & (double | ~nearer_upper))]
            else:
                lines = [((first + last) / 2, inked)]
            for pos, where in lines:
                cols = np.flatnonzero(where)
                if cols.size:
                    out.append((y + pos, x + cols[0] + half, x + cols[-1] - half))
    return out


def _candidates(band, xs, ys, min_side):
    """Every rectangle on the line grid whose four edges are inked."""
    out = []
    for i, xa in enumerate(xs):
        for xb in xs[i + 1:]:
            if xb - xa < min_side:
                continue
            for j, ya in enumerate(ys):
                for yb in ys[j + 1:]:
                    if (yb - ya >= min_side and _covered(band, xa, xb, ya, True)
                            and _covered(band, xa, xb, yb, True)
                            and _covered(band, ya, yb, xa, False)
                            and _covered(band, ya, yb, xb, False)):
                        out.append((i, j, xs.index(xb), ys.index(yb)))
    return out


OVERLAP_COST = 0.75  # in boxes, per pair of overlapping boxes; see _select
TIE = 0.01           # costs closer than this are equal (the rest is a tie-break)
DUPLICATE_IOU = 0.9  # two found boxes this alike are one box drawn on two nearby lines
SAME_READING_IOU = 0.7
SEARCH_NODES = 20000


def _select(cover, required, boxes, thick):
    """The set of candidates that explains all the ink at the least cost.

    Cost = number of boxes + ``OVERLAP_COST`` per pair of boxes whose interiors overlap.
    The same strokes can often be read several ways: two boxes side by side sharing an edge
    are also their union plus one of them; a box crossed by a neighbour that shares one or
    two of its edges is also three or four tiles; two boxes stacked with an overlap, sharing
    their side edges, are also three tiles. Counting boxes alone cannot choose (union plus
    one is as few as two tiles); never overlapping cuts a crossed box at its neighbour's
    edges. At 0.75 per overlap, side-by-side boxes stay two (2 < 2.75) and crossed or
    stacked ones stay two (2.75 < 3 tiles). When several different readings share the least
    cost (a 2 x 2 grid is also three overlapping boxes, four ways), the strokes do not say
    which boxes overlap, and the reading as boxes that only touch is taken if there is one.
    Exact branch and bound over the unexplained ink; greedy if that takes too long.
    """
    n = len(boxes)
    tol = thick / 2 + 1

    def pair_cost(a, b):
        p, q = boxes[a], boxes[b]
        iw = min(p[2], q[2]) - max(p[0], q[0])
        ih = min(p[3], q[3]) - max(p[1], q[1])
        if iw > tol and ih > tol:
            return OVERLAP_COST
        # Within a stroke: a tie-break only, so that of two readings of strokes a few
        # pixels apart the one whose boxes do not overlap wins.
        return 1e-3 * max(iw, 0) * max(ih, 0) / min((p[2] - p[0]) * (p[3] - p[1]),
                                                    (q[2] - q[0]) * (q[3] - q[1]))

    pair = [[pair_cost(a, b) for b in range(n)] for a in range(n)]
    # Larger boxes first: they explain more ink, so good solutions come early.
    order = sorted(range(n), key=lambda c: -bin(cover[c]).count("1"))

    def search(allow_overlap):
        found, best, nodes = [], [float("inf")], [0]

        def step(chosen, covered, cost):
            nodes[0] += 1
            if cost > best[0] + TIE or nodes[0] > SEARCH_NODES:
                return
            missing = required & ~covered
            if not missing:
                best[0] = min(best[0], cost)
                found.append((cost, sorted(chosen)))
                return
            unit = (missing & -missing).bit_length() - 1      # lowest unexplained unit
            for c in order:
                if c in chosen or not (cover[c] >> unit) & 1:
                    continue
                extra = sum(pair[c][d] for d in chosen)
                if extra >= OVERLAP_COST and not allow_overlap:
                    continue
                chosen.append(c)
                step(chosen, covered | cover[c], cost + 1 + extra)
                chosen.pop()

        step([], 0, 0.0)
        return [sel for cost, sel in sorted(found) if cost <= best[0] + TIE]

    cheapest = search(True)
    readings = []
    for sel in cheapest:  # readings that differ only by a line a pixel or two over are one
        if not any(_same_reading([boxes[c] for c in sel], [boxes[c] for c in r])
                   for r in readings):
            readings.append(sel)
    if len(readings) > 1:
        tiles = search(False)
        if tiles:
            return tiles[0]
    if readings:
        return readings[0]
    chosen, covered = [], 0      # search cut short: cover greedily
    while required & ~covered:
        c = max((c for c in range(n) if c not in chosen),
                key=lambda c: bin(cover[c] & required & ~covered).count("1"))
        chosen.append(c)
        covered |= cover[c]
    return sorted(chosen)


def _same_reading(a, b):
    """Two readings differ only where a line was taken a stroke or so over (a grid's
    readings differ in whole cells)."""
    return len(a) == len(b) and all(max(_iou(p, q) for q in b) >= SAME_READING_IOU for p in a)


def _grid_boxes(mask, thick, min_side):
    """Rectangles of one group of ink from its straight strokes (see the module docstring)."""
    h_lines = _lines(mask, thick, True)
    v_lines = _lines(mask, thick, False)
    if not h_lines or not v_lines:
        return []
    ys, y_of = _cluster([p for p, _, _ in h_lines])
    xs, x_of = _cluster([p for p, _, _ in v_lines])
    if len(xs) > MAX_LINES or len(ys) > MAX_LINES:
        return []  # not a handful of boxes; the leftover pass reports the ink
    band = cv2.dilate(mask, np.ones((3, 3), np.uint8))  # +-1 px tolerance for line checks
    cands = _candidates(band, xs, ys, min_side)
    if not cands:
        return []
    # Ink units: points every 2 px along each stroke's centre line, as (orientation, line,
    # position); a candidate explains the units on its four edges.
    # A stroke's last stroke width or so may be ink bridged (JPEG colour bleed) from a
    # corner to a nearby parallel stroke, not evidence of an edge that goes on.
    trim = thick + 1
    units = [(0, y_of[i], float(t)) for i, (_, a, b) in enumerate(h_lines)
             for t in np.arange(a + trim, b - trim + 1e-9, 2.0)]
    units += [(1, x_of[i], float(t)) for i, (_, a, b) in enumerate(v_lines)
              for t in np.arange(a + trim, b - trim + 1e-9, 2.0)]
    tol = thick / 2 + 1
    cover = []
    for i, j, k, m in cands:
        bits = 0
        for u, (o, line, t) in enumerate(units):
            if o == 0 and line in (j, m) and xs[i] - tol <= t <= xs[k] + tol or \
                    o == 1 and line in (i, k) and ys[j] - tol <= t <= ys[m] + tol:
                bits |= 1 << u
        cover.append(bits)
    required = 0
    for bits in cover:  # ink that no candidate explains is left to the leftover pass
        required |= bits
    boxes = [[xs[i], ys[j], xs[k], ys[m]] for i, j, k, m in cands]
    chosen = _select(cover, required, boxes, thick)
    # Two strokes a pixel or two apart can leave a near copy of a box (the same outline on
    # the neighbouring line); keep the copy that explains more ink.
    chosen.sort(key=lambda c: -bin(cover[c]).count("1"))
    kept = []
    for c in chosen:
        if all(_iou(boxes[c], boxes[d]) < DUPLICATE_IOU for d in kept):
            kept.append(c)
    return [boxes[c] for c in sorted(kept)]


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


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


def _analyse(mask, min_side):
    """Boxes (local coordinates) and notes for one group of nearby ink."""
    notes = []
    thick = stroke_width(mask)
    boxes = _grid_boxes(mask, thick, min_side)
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
    # 3 x 3: a 5 x 5 closing also bridged a box corner to a parallel stroke 4 px away,
    # which then reads as an edge that goes on.
    full = red_mask(img, threshold, close=3)
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


def remove_ink(img, threshold=CR_INK, margin=1, ring=JPEG_CHROMA_REACH, method="reflect"):
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
        luma at full resolution, so there only the (subsampled) colour is wrong. A square
        band (:data:`JPEG_CHROMA_REACH` by default), since the colour is wrong across the
        whole 16 x 16 block a stroke touches.
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
    halo = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
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
