"""Red-box extraction and ink removal (datasets/redbox.py) on drawn screenshots.

References: boxes drawn with ``cv2.rectangle`` (their nominal corners are the truth, as in
the phantom), and the notes' plain recipe (Cr threshold -> ``cv2.findContours`` ->
``cv2.boundingRect``), which our boxes must equal up to half a stroke on isolated boxes.
"""
import cv2
import numpy as np
import pytest

from datasets.recovery import box_iou
from datasets.redbox import CR_THRESHOLD, cr_channel, extract_red_boxes, remove_ink


def grey_image(rng, h=240, w=320):
    img = np.clip(rng.normal(100, 35, (h, w)), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.GaussianBlur(img, (3, 3), 0), cv2.COLOR_GRAY2BGR)


def red(rng):
    """A doctor's red: like the phantom, not always pure (B, G in 0..40, R in 200..255)."""
    return (int(rng.integers(0, 41)), int(rng.integers(0, 41)), int(rng.integers(200, 256)))


def jpeg(img, quality):
    return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], 1)


def draw(img, boxes, colour, thickness):
    out = img.copy()
    for b in boxes:
        cv2.rectangle(out, (b[0], b[1]), (b[2], b[3]), colour, thickness)
    return out


def random_boxes(rng, n, w, h, lo=25, hi=80, gap=12):
    boxes = []
    while len(boxes) < n:
        bw, bh = rng.integers(lo, hi, 2)
        x, y = rng.integers(4, w - bw - 4), rng.integers(4, h - bh - 4)
        b = [int(x), int(y), int(x + bw), int(y + bh)]
        if all(b[0] > o[2] + gap or b[2] < o[0] - gap or b[1] > o[3] + gap or b[3] < o[1] - gap
               for o in boxes):
            boxes.append(b)
    return boxes


def match(truth, got):
    """Best IoU of each truth box among the found boxes."""
    return [max((box_iou(t, g) for g in got), default=0.0) for t in truth]


@pytest.mark.parametrize("thickness", [1, 2, 3])
@pytest.mark.parametrize("quality", [None, 75, 95])
def test_random_boxes_recovered(thickness, quality):
    seed = 100 * thickness + (quality or 0)
    rng = np.random.default_rng(seed)
    for trial in range(4):
        truth = random_boxes(rng, int(rng.integers(1, 5)), 320, 240)
        img = draw(grey_image(rng), truth, red(rng), thickness)
        if quality:
            img = jpeg(img, quality)
        got, notes = extract_red_boxes(img)
        ious = match(truth, got)
        assert len(got) == len(truth), (seed, trial, truth, got, notes)
        if quality is None:
            # Lossless: the stroke centre lines are the nominal corners exactly.
            assert min(ious) == pytest.approx(1.0), (seed, trial, truth, got)
        else:
            assert min(ious) >= 0.9, (seed, trial, truth, got)


def test_small_boxes_with_thick_strokes_after_jpeg():
    rng = np.random.default_rng(7)
    truth = random_boxes(rng, 6, 320, 240, lo=25, hi=27, gap=15)
    for thickness in (1, 3):
        img = jpeg(draw(grey_image(rng), truth, red(rng), thickness), 80)
        got, _ = extract_red_boxes(img)
        assert len(got) == len(truth)
        assert min(match(truth, got)) >= 0.9, (thickness, truth, got)


def test_matches_notes_recipe_on_isolated_boxes():
    """The notes: Cr threshold, contours, bounding rectangle. Ours is that rectangle moved in
    by half the painted stroke (cv2 paints 1, 3, 5 px for thickness 1, 2, 3)."""
    rng = np.random.default_rng(3)
    for thickness in (1, 2, 3):
        truth = random_boxes(rng, 3, 320, 240)
        img = draw(grey_image(rng), truth, (0, 0, 255), thickness)
        cr = cr_channel(img)
        contours, _ = cv2.findContours((cr > CR_THRESHOLD).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        recipe = sorted(cv2.boundingRect(c) for c in contours)
        blank = np.zeros((9, 9), np.uint8)
        cv2.line(blank, (4, 0), (4, 8), 255, thickness)
        stroke = int((blank[4] > 0).sum())
        half = (stroke - 1) / 2
        expected = sorted([x + half, y + half, x + w - 1 - half, y + h - 1 - half]
                          for x, y, w, h in recipe)
        got, _ = extract_red_boxes(img)
        assert np.allclose(sorted(got), expected), (thickness, sorted(got), expected)


LAYOUTS = {
    "nested apart": [[40, 40, 200, 180], [80, 80, 150, 140]],
    "nested, shared corner": [[40, 40, 200, 180], [40, 40, 110, 100]],
    "side by side, shared edge": [[40, 40, 110, 150], [110, 40, 200, 150]],
    "stacked, shared edge": [[40, 40, 160, 100], [40, 100, 160, 170]],
    "crossing": [[40, 40, 140, 140], [90, 90, 220, 200]],
    "crossing one edge": [[40, 40, 140, 140], [90, 70, 220, 110]],
    "apart by 3 px": [[40, 40, 110, 150], [113, 40, 200, 150]],
    "grid of four": [[40, 40, 90, 90], [90, 40, 140, 90], [40, 90, 90, 140], [90, 90, 140, 140]],
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("thickness", [1, 3])
def test_nested_touching_crossing(name, thickness):
    truth = LAYOUTS[name]
    rng = np.random.default_rng(11)
    img = draw(grey_image(rng), truth, red(rng), thickness)
    got, notes = extract_red_boxes(img)
    assert len(got) == len(truth), (name, got, notes)
    assert min(match(truth, got)) >= 0.97, (name, truth, got)
    got_j, notes_j = extract_red_boxes(jpeg(img, 85))
    assert len(got_j) == len(truth), (name, got_j, notes_j)
    assert min(match(truth, got_j)) >= 0.93, (name, truth, got_j)


def test_outline_broken_at_corners_still_gives_its_box():
    rng = np.random.default_rng(5)
    truth = [60, 50, 180, 150]
    img = draw(grey_image(rng), [truth], (0, 0, 255), 1)
    base = grey_image(np.random.default_rng(6))
    for x, y in ((60, 50), (180, 150)):          # cut two opposite corners
        img[y - 3:y + 4, x - 3:x + 4] = base[y - 3:y + 4, x - 3:x + 4]
    got, notes = extract_red_boxes(img)
    assert len(got) == 1 and box_iou(got[0], truth) >= 0.95, (got, notes)
    assert any("encloses no interior" in n for n in notes)


def test_specks_dropped_with_a_note_and_no_red_no_boxes():
    rng = np.random.default_rng(2)
    img = grey_image(rng)
    assert extract_red_boxes(img) == ([], [])
    img[100:103, 100:103] = (0, 0, 255)
    got, notes = extract_red_boxes(img)
    assert got == []
    assert any("smaller than" in n for n in notes)


@pytest.mark.parametrize("quality", [None, 75])
def test_remove_ink_leaves_no_red_and_keeps_the_rest(quality):
    rng = np.random.default_rng(9)
    clean_truth = grey_image(rng)
    boxes = random_boxes(rng, 3, 320, 240)
    img = draw(clean_truth, boxes, red(rng), 3)
    if quality:
        img = jpeg(img, quality)
        clean_truth = jpeg(clean_truth, quality)
    clean, n = remove_ink(img)
    assert n > 0
    assert int(cr_channel(clean).max()) <= 140
    # Far from the ink nothing changes.
    ink = np.zeros(img.shape[:2], np.uint8)
    for b in boxes:
        cv2.rectangle(ink, (b[0], b[1]), (b[2], b[3]), 1, 3)
    far = cv2.dilate(ink, np.ones((41, 41), np.uint8)) == 0
    assert far.any()
    assert np.array_equal(clean[far], img[far])
    # Where the ink was, the grey resembles the scene (inpainted, not black or red).
    on_ink = ink.astype(bool)
    diff = np.abs(clean[on_ink].astype(int) - clean_truth[on_ink].astype(int)).mean()
    assert diff < 40


def test_filled_strokes_keep_the_speckle_texture():
    """Diffusion inpainting (cv2.inpaint) leaves a smooth frame where the box was, itself a
    cue; the mirrored fill keeps the scene's texture in the band."""
    rng = np.random.default_rng(13)
    scene = grey_image(rng)
    boxes = random_boxes(rng, 3, 320, 240)
    img = draw(scene, boxes, (0, 0, 255), 3)
    band = np.zeros(img.shape[:2], np.uint8)
    for b in boxes:
        cv2.rectangle(band, (b[0], b[1]), (b[2], b[3]), 1, 3)
    band = band.astype(bool)
    texture = float(scene[band].std())
    mirrored = float(remove_ink(img)[0][band].std())
    telea = float(remove_ink(img, method="telea")[0][band].std())
    assert mirrored > 0.7 * texture, (mirrored, texture)
    assert telea < 0.6 * texture, (telea, texture)
    with pytest.raises(ValueError, match="method"):
        remove_ink(img, method="blur")


def test_remove_ink_without_ink_returns_the_image():
    img = grey_image(np.random.default_rng(4))
    out, n = remove_ink(img)
    assert n == 0 and out is img


def side_thickness_loop(mask, hole, x0, y0, x1, y1):
    """The obvious per-row/per-column version of redbox._side_thickness."""
    def run(line):
        n = 0
        for v in line:
            if not v:
                break
            n += 1
        return n
    h, w = mask.shape
    out = []
    for side in ("left", "top", "right", "bottom"):
        runs = []
        if side in ("left", "right"):
            for y in range(y0, y1 + 1):
                if side == "left" and x0 > 0 and hole[y, x0]:
                    runs.append(run(mask[y, x0 - 1::-1]))
                elif side == "right" and x1 < w - 1 and hole[y, x1]:
                    runs.append(run(mask[y, x1 + 1:]))
        else:
            for x in range(x0, x1 + 1):
                if side == "top" and y0 > 0 and hole[y0, x]:
                    runs.append(run(mask[y0 - 1::-1, x]))
                elif side == "bottom" and y1 < h - 1 and hole[y1, x]:
                    runs.append(run(mask[y1 + 1:, x]))
        runs = [r for r in runs if r > 0]
        out.append(float(np.median(runs)) if runs else 0.0)
    return out


def test_side_thickness_matches_loop():
    from datasets.redbox import _holes, _side_thickness
    rng = np.random.default_rng(12)
    for trial in range(20):
        mask = np.zeros((90, 120), np.uint8)
        for b in random_boxes(rng, 3, 120, 90, lo=12, hi=40, gap=-5):
            cv2.rectangle(mask, (b[0], b[1]), (b[2], b[3]), 1, int(rng.integers(1, 4)))
        mask[rng.random(mask.shape) < 0.02] = 1           # ragged strokes
        for rect, hole in _holes(mask):
            assert _side_thickness(mask, hole, *rect) == side_thickness_loop(mask, hole, *rect)
