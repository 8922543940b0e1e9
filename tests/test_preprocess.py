"""Border crop, midline split, shift and clip (datasets/prepared/preprocess.py).

References: the notes' single-scan-line crop written out literally, and a brute-force
pixel-mask clip (rasterise the box, intersect with the rectangle, take the bounding box).
"""
import cv2
import numpy as np
import pytest

from datasets.prepared import preprocess
from datasets.prepared.preprocess import assign_boxes, clip_box, find_crop, panel_rects


def screenshot(rng, w=400, h=300, panels=((60, 40, 190, 250), (205, 40, 335, 250)), text=True):
    img = np.zeros((h, w), np.uint8)
    for x0, y0, x1, y1 in panels:
        img[y0:y1, x0:x1] = np.clip(rng.normal(110, 40, (y1 - y0, x1 - x0)), 25, 255)
        img[y1 - 30:y1, x0:x1] //= 3          # attenuated, dark bottom rows
    if text:
        cv2.putText(img, "MSK L12-5  2021-03-04", (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1)
        cv2.putText(img, "G50 D4.0cm", (5, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 230, 1)
        for y in range(60, 240, 40):           # depth scale left of the left panel
            cv2.circle(img, (50, y), 2, 200, -1)
    return img


def notes_crop(grey, threshold):
    """The notes, literally: column W/4 scanned down (top) and up (bottom), row 3H/4
    scanned right (left) and left (right); first pixel above the threshold."""
    h, w = grey.shape
    col, row = grey[:, w // 4], grey[3 * h // 4, :]
    top = int(np.argmax(col > threshold))
    bottom = h - int(np.argmax(col[::-1] > threshold))
    left = int(np.argmax(row > threshold))
    right = w - int(np.argmax(row[::-1] > threshold))
    return left, top, right, bottom


def test_crop_equals_notes_method_on_a_clean_screenshot():
    rng = np.random.default_rng(0)
    img = screenshot(rng, text=False)
    rect, info = find_crop(img, threshold=20)
    assert info["method"] == "scan" and info["reason"] is None
    assert rect == notes_crop(img, 20) == (60, 40, 335, 250)


def test_crop_robust_to_scanner_text_and_depth_scale():
    rng = np.random.default_rng(1)
    img = screenshot(rng)
    # Put text right across the notes' W/4 column and 3H/4 row: the literal method is fooled.
    cv2.putText(img, "|||", (95, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 2)
    cv2.line(img, (10, 224), (30, 224), 255, 2)
    assert notes_crop(img, 20) != (60, 40, 335, 250)
    rect, info = find_crop(img, threshold=20)
    assert rect == (60, 40, 335, 250), info
    assert find_crop(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), threshold=20)[0] == rect


def test_crop_falls_back_to_the_full_image_with_a_reason():
    black = np.zeros((120, 160), np.uint8)
    rect, info = find_crop(black)
    assert rect == (0, 0, 160, 120) and info["method"] == "full" and "found" in info["reason"]
    spot = black.copy()
    spot[45:75, 65:95] = 200                      # only a small bright patch: implausible crop
    rect, info = find_crop(spot, column_fracs=(0.45, 0.5, 0.55), row_fracs=(0.45, 0.5))
    assert rect == (0, 0, 160, 120) and "under" in info["reason"]


def test_panel_rects_split_at_the_midline():
    assert panel_rects((10, 5, 211, 105)) == {"L": (10, 5, 110, 105), "R": (110, 5, 211, 105)}
    assert panel_rects((10, 5, 211, 105), split=False) == {"full": (10, 5, 211, 105)}


def brute_clip(box, rect, size=(420, 320)):
    """Clip by rasterising on a 1/4-pixel grid (coordinates here are multiples of 0.25)."""
    s = 4
    grid = np.zeros((size[1] * s, size[0] * s), bool)
    x1, y1, x2, y2 = (int(round(v * s)) for v in box)
    grid[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = True
    keep = np.zeros_like(grid)
    rx1, ry1, rx2, ry2 = (int(v * s) for v in rect)
    keep[ry1:ry2, rx1:rx2] = True
    ys, xs = np.nonzero(grid & keep)
    if xs.size == 0:
        return None
    return [xs.min() / s, ys.min() / s, (xs.max() + 1) / s, (ys.max() + 1) / s]


def test_clip_box_matches_pixel_mask():
    rng = np.random.default_rng(2)
    for _ in range(60):
        x1, y1 = rng.integers(-40, 400, 2) + rng.integers(0, 4, 2) / 4
        w, h = rng.integers(1, 160, 2) / 4
        box = [float(x1), float(y1), float(x1 + w), float(y1 + h)]
        rect = (int(rng.integers(0, 150)), int(rng.integers(0, 100)), 0, 0)
        rect = (rect[0], rect[1], rect[0] + int(rng.integers(20, 250)),
                rect[1] + int(rng.integers(20, 200)))
        assert clip_box(box, rect) == brute_clip(box, rect), (box, rect)


def test_assign_boxes_sides_offsets_and_reasons():
    size, crop = (400, 300), (60, 40, 336, 250)
    halves = panel_rects(crop)                          # mid = 198
    objects = [{"box": [80, 60, 120, 90], "name": "lesion", "difficult": 0},   # left
               {"box": [250, 100, 300, 140], "name": "lesion", "difficult": 1},  # right
               {"box": [180, 100, 210, 130], "name": "lesion", "difficult": 0},  # midline
               {"box": [40, 20, 90, 70], "name": "lesion", "difficult": 0},      # past the crop
               {"box": [500, 10, 520, 30], "name": "lesion", "difficult": 0},    # off-image
               {"box": [10, 10, 50, 30], "name": "lesion", "difficult": 0},      # in the border
               {"box": [100, 100, 100, 130], "name": "lesion", "difficult": 0},  # zero area
               {"box": [390, 280, 420, 330], "name": "lesion", "difficult": 0}]  # partly off
    per_half, events = assign_boxes(objects, size, crop, halves)
    left = [o["box"] for o in per_half["L"]]
    right = [o["box"] for o in per_half["R"]]
    assert left == [[20, 20, 60, 50], [120, 60, 138, 90], [0, 0, 30, 30]]
    assert right == [[52, 60, 102, 100]]
    assert per_half["R"][0]["difficult"] == 1
    # half box + offset = clipped source box
    for side, objs in per_half.items():
        for o in objs:
            ox, oy = halves[side][:2]
            assert [o["box"][0] + ox, o["box"][1] + oy, o["box"][2] + ox, o["box"][3] + oy] == \
                o["source_box"]
    codes = sorted(e["code"] for e in events)
    assert codes == ["clipped", "clipped", "outside_crop", "outside_crop", "outside_image",
                     "zero_area"]
    assert any("midline" in e["reason"] for e in events)
    assert any("past the image" in e["reason"] and e["kind"] == "dropped" or
               e["code"] == "outside_crop" for e in events)


def test_min_side_drops_slivers():
    halves = panel_rects((0, 0, 100, 100))
    per_half, events = assign_boxes([{"box": [49.5, 10, 60, 20]}], (100, 100), (0, 0, 100, 100),
                                    halves, min_side=1.0)
    assert per_half["R"] and not events[0]["kind"] == "dropped"
    per_half, events = assign_boxes([{"box": [45, 10, 50.5, 20]}], (100, 100), (0, 0, 100, 100),
                                    halves, min_side=1.0)
    assert per_half["L"][0]["box"] == [45, 10, 50, 20]
    assert preprocess.clip_box([0, 0, 5, 5], (5, 5, 10, 10)) is None
