"""How well a prepared folder recovers a phantom set's true boxes.

Each prepared VOC box is mapped back to source pixels with the manifest offsets and matched
to the phantom's ``truth.json`` boxes of the same screenshot (best IoU). Used by the
prepare_data tests and ``bench/bench_prepare.py``.
"""
import json
from pathlib import Path

import numpy as np

from datasets.prepared.folder import read_manifest
from datasets.prepared.voc import read_voc
from eval.detection import box_iou

SIDE_NAMES = {"L": "left", "R": "right", "full": "full"}


def prepared_boxes(data_dir):
    """Source-pixel boxes per raw file: ``{source: [(side, box, sample id)]}``."""
    data_dir = Path(data_dir)
    out = {}
    for row in read_manifest(data_dir):
        ox, oy = float(row["x_offset"]), float(row["y_offset"])
        for obj in read_voc(data_dir / "Annotations" / f"{row['id']}.xml")["objects"]:
            b = obj["box"]
            out.setdefault(row["source"], []).append(
                (SIDE_NAMES[row["side"]], [b[0] + ox, b[1] + oy, b[2] + ox, b[3] + oy], row["id"]))
    return out


def recovery(raw_dir, data_dir, iou_min=0.9):
    """Match every truth box of a phantom set to the prepared boxes.

    Returns
    -------
    dict
        ``{"n_truth", "n_recovered" (IoU >= iou_min and the right side), "rate",
        "mean_iou", "min_iou", "n_prepared", "extra" (prepared boxes matching no truth box
        at IoU >= 0.5), "misses": [{"file", "truth", "best", "iou", "side"}]}``.
    """
    truth = json.loads((Path(raw_dir) / "truth.json").read_text(encoding="utf-8"))
    got = prepared_boxes(data_dir)
    ious, misses, n_ok, extra, n_prepared = [], [], 0, 0, 0
    for im in truth["images"]:
        mine = got.get(im["file"], []) + (got.get(im["labelme"], []) if im.get("labelme") else [])
        n_prepared += len(mine)
        # truth x prepared boxes; continuous IoU (offset 0): truth.json holds exact geometry
        iou = box_iou([tb["box"] for tb in im["boxes"]], [b for _, b, _ in mine], offset=0)
        for t, tb in enumerate(im["boxes"]):
            best = (0.0, None, None)
            if mine:
                j = int(np.argmax(iou[t]))          # the first of equal bests
                best = (float(iou[t, j]), mine[j][0], mine[j][1])
            ious.append(best[0])
            if best[0] >= iou_min and best[1] == tb["side"]:
                n_ok += 1
            else:
                misses.append({"file": im["file"], "truth": tb["box"], "side": tb["side"],
                               "best": best[2], "best_side": best[1], "iou": best[0]})
        extra += int(np.sum(iou.max(axis=0, initial=0.0) < 0.5))
    n = len(ious)
    return {"n_truth": n, "n_recovered": n_ok, "rate": n_ok / n if n else 1.0,
            "mean_iou": float(np.mean(ious)) if n else 1.0,
            "min_iou": float(np.min(ious)) if n else 1.0,
            "n_prepared": n_prepared, "extra": extra, "misses": misses}
