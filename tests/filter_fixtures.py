"""Tiny prepared-data folders for the filter tests (docs/CONTRACTS.md "Prepared data").

Each source screenshot gives one detection half with 1-2 dark lesions and a reference half
with the same textured anatomy (shifted by a pixel or two, fresh noise) and no lesion;
both halves share a dark round look-alike. Small (96 x 80 px halves) so crop building and
training stay within seconds.
"""
import csv
import json
from pathlib import Path

import cv2
import numpy as np

from datasets.prepared.voc import write_voc

HALF_W, HALF_H = 96, 80
MANIFEST_COLUMNS = ["id", "source", "group", "side", "x_offset", "y_offset", "width", "height",
                    "n_boxes", "ref_x_offset", "ref_y_offset", "ref_width", "ref_height",
                    "annotation", "rec_idx"]


def _texture(rng, h, w):
    base = rng.normal(0, 1, (h + 8, w + 8)).astype(np.float32)
    base = cv2.GaussianBlur(base, (0, 0), 2.0)
    stripes = np.sin(np.arange(w + 8)[None, :] * 0.4 + np.arange(h + 8)[:, None] * 0.15)
    return base * 25 + stripes.astype(np.float32) * 15 + 120


def _draw_blob(img, box, level):
    x1, y1, x2, y2 = box
    centre = (int((x1 + x2) / 2), int((y1 + y2) / 2))
    axes = (max(int((x2 - x1) / 2), 1), max(int((y2 - y1) / 2), 1))
    mask = np.zeros(img.shape, np.uint8)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, -1)
    mask = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 1.5)
    img[:] = img * (1 - mask) + level * mask


def make_data(root, n_sources=10, seed=0, test_sources=3):
    """Write a prepared-data folder; return ``(data_dir, lookalikes)`` where ``lookalikes``
    maps each id to its look-alike boxes in half pixels."""
    rng = np.random.default_rng(seed)
    data = Path(root)
    for sub in ("JPEGImages", "Reference", "Annotations"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    rows, ids, lookalikes = [], [], {}
    for s in range(n_sources):
        source = f"scan_{s:04d}.jpg"
        side = "L" if s % 2 == 0 else "R"
        image_id = f"scan_{s:04d}_{side}"
        tex = _texture(rng, HALF_H, HALF_W)
        sx, sy = rng.integers(0, 3, 2)
        lesion = tex[4:4 + HALF_H, 4:4 + HALF_W].copy() + rng.normal(0, 6, (HALF_H, HALF_W))
        ref = tex[4 + sy:4 + sy + HALF_H, 4 + sx:4 + sx + HALF_W].copy() \
            + rng.normal(0, 6, (HALF_H, HALF_W))
        boxes = []
        for _ in range(int(rng.integers(1, 3))):
            w, h = rng.integers(14, 24, 2)
            x1, y1 = rng.integers(4, HALF_W - w - 4), rng.integers(4, HALF_H - h - 4)
            box = [float(x1), float(y1), float(x1 + w), float(y1 + h)]
            _draw_blob(lesion, box, 45)
            boxes.append(box)
        r = int(rng.integers(6, 9))
        cx, cy = int(rng.integers(r + 2, HALF_W - r - 2)), int(rng.integers(r + 2, HALF_H - r - 2))
        la = [float(cx - r), float(cy - r), float(cx + r), float(cy + r)]
        _draw_blob(lesion, la, 60)
        _draw_blob(ref, [la[0] + sx - 0, la[1] + sy - 0, la[2] + sx, la[3] + sy], 60)
        lookalikes[image_id] = [la]
        cv2.imwrite(str(data / "JPEGImages" / f"{image_id}.jpg"),
                    np.clip(lesion, 0, 255).astype(np.uint8))
        cv2.imwrite(str(data / "Reference" / f"{image_id}.jpg"),
                    np.clip(ref, 0, 255).astype(np.uint8))
        write_voc(data / "Annotations" / f"{image_id}.xml", f"{image_id}.jpg", HALF_W, HALF_H,
                  [{"name": "lesion", "box": b} for b in boxes])
        x_off = 0 if side == "L" else HALF_W
        rows.append({"id": image_id, "source": source, "group": f"scan_{s:04d}", "side": side,
                     "x_offset": x_off, "y_offset": 0, "width": HALF_W, "height": HALF_H,
                     "n_boxes": len(boxes), "ref_x_offset": HALF_W - x_off, "ref_y_offset": 0,
                     "ref_width": HALF_W, "ref_height": HALF_H, "annotation": "red",
                     "rec_idx": s})
        ids.append(image_id)
    with open(data / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    test, train = ids[:test_sources], ids[test_sources:]
    splits = {"seed": seed, "k": 2, "test_frac": test_sources / n_sources, "group_by": "source",
              "test": test, "train": train,
              "folds": [{"train": train[1::2], "val": train[0::2]},
                        {"train": train[0::2], "val": train[1::2]}]}
    (data / "splits.json").write_text(json.dumps(splits), encoding="utf-8")
    return data, lookalikes


def write_detections(data, ids, lookalikes, path, seed=0):
    """Synthetic detections (jittered truth + look-alikes + background) as a JSON file."""
    from datasets.filter.crops.folder import read_gt_boxes
    from datasets.filter.synthetic_detections import synthetic_detections
    from eval.detection_io import write_detections_json
    dets = {}
    for i, image_id in enumerate(ids):
        dets[image_id] = synthetic_detections(read_gt_boxes(data, image_id),
                                              np.random.default_rng([seed, i]),
                                              (HALF_W, HALF_H), lookalikes[image_id])
    write_detections_json(path, dets, ["lesion"])
    return path
