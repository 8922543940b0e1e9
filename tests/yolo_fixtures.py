"""A tiny prepared-data folder for the detector tests (the DATA layout of docs/CONTRACTS.md).

Speckled grey images of a few sizes with 1-3 dark elliptic "lesions", their boxes in
``records/all.rec``, ``manifest.csv`` and ``splits.json`` (test ids + k folds). Built with
the repo's own ``.lst``/record writers, small enough to train on in seconds.
"""
import csv
import json
from pathlib import Path

import cv2
import numpy as np

from im2rec_tools.lst import lst_line, write_lst
from im2rec_tools.records import pack_records

CLASSES = ["lesion"]


def _image(rng, width, height, n_boxes):
    img = rng.rayleigh(60, size=(height, width)).clip(0, 255)
    img = cv2.GaussianBlur(img, (3, 3), 0)
    boxes = []
    for _ in range(n_boxes):
        bw, bh = rng.uniform(0.18, 0.35) * width, rng.uniform(0.18, 0.35) * height
        x1, y1 = rng.uniform(1, width - bw - 1), rng.uniform(1, height - bh - 1)
        cx, cy = x1 + bw / 2, y1 + bh / 2
        yy, xx = np.mgrid[0:height, 0:width]
        inside = ((xx + 0.5 - cx) / (bw / 2)) ** 2 + ((yy + 0.5 - cy) / (bh / 2)) ** 2 <= 1
        img[inside] *= 0.25
        boxes.append([x1, y1, x1 + bw, y1 + bh])
    img = np.repeat(img.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return img, boxes


def make_detection_data(root, n=12, n_test=4, k=2, seed=0, sizes=((96, 80), (80, 96), (112, 96))):
    """Write a DATA folder under ``root``; returns its path and the splits dict."""
    root = Path(root)
    rng = np.random.RandomState(seed)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    lines, manifest = [], []
    for i in range(n):
        sid = f"scan_{i:04d}_{'L' if i % 2 else 'R'}"
        w, h = sizes[i % len(sizes)]
        img, boxes = _image(rng, w, h, 1 + i % 3)
        cv2.imwrite(str(root / "JPEGImages" / f"{sid}.jpg"), img)
        objects = [{"name": "lesion", "box": b, "difficult": 0} for b in boxes]
        lines.append(lst_line(i, w, h, objects, f"JPEGImages/{sid}.jpg", CLASSES))
        manifest.append({"id": sid, "source": f"scan_{i:04d}", "group": f"scan_{i:04d}",
                         "side": "L" if i % 2 else "R", "x_offset": 0, "y_offset": 0,
                         "width": w, "height": h, "n_boxes": len(boxes), "ref_x_offset": 0,
                         "ref_y_offset": 0, "ref_width": w, "ref_height": h,
                         "annotation": "red", "rec_idx": i})
    write_lst(root / "records" / "all.lst", lines)
    pack_records(root / "records" / "all.lst", root)
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        wr = csv.DictWriter(f, fieldnames=list(manifest[0]))
        wr.writeheader()
        wr.writerows(manifest)
    ids = [m["id"] for m in manifest]
    order = rng.permutation(n)
    test = [ids[j] for j in order[:n_test]]
    train = [ids[j] for j in order[n_test:]]
    folds = []
    for f in range(k):
        val = train[f::k]
        folds.append({"train": [t for t in train if t not in val], "val": val})
    splits = {"seed": seed, "k": k, "test_frac": n_test / n, "group_by": "source",
              "test": test, "train": train, "folds": folds}
    with open(root / "splits.json", "w", encoding="utf-8") as f:
        json.dump(splits, f, indent=2)
    return root, splits
