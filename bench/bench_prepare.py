"""prepare_data.py on a phantom set: box recovery and screenshots per second.

Usage: ``python bench/bench_prepare.py [--num 60 --seed 0 --keep DIR]``

Generates a phantom set, runs the whole prepare chain once (timed), and scores the
prepared boxes against ``truth.json`` (mapped back to source pixels). Baseline in the same
run: the notes' plain recipe on the red-box screenshots (Cr threshold, contours, bounding
rectangle; no stroke correction), scored the same way.
Last line: ``recovery: R notes_recipe_recovery: B mean_iou: M screenshots_per_s: S``.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import prepare_data  # noqa: E402
from datasets.phantom import generator as phantom  # noqa: E402
from datasets.prepared.recovery import recovery  # noqa: E402
from datasets.prepared.redbox import CR_THRESHOLD, cr_channel  # noqa: E402
from eval.detection import box_iou  # noqa: E402


def notes_recipe(img, min_area=30):
    """Notes 002: YCrCb -> Cr -> threshold -> contours -> drop small -> bounding rectangle."""
    mask = (cr_channel(img) > CR_THRESHOLD).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        if w * h >= min_area:
            out.append([x, y, x + w, y + h])
    return out


def baseline(raw, iou_min=0.9):
    truth = json.loads((Path(raw) / "truth.json").read_text())
    n = ok = 0
    for im in truth["images"]:
        if im["annotation"] != "red":
            continue
        boxes = notes_recipe(cv2.imread(str(Path(raw) / im["file"])))
        for tb in im["boxes"]:
            n += 1
            ok += box_iou([tb["box"]], boxes, offset=0).max(initial=0.0) >= iou_min
    return ok / n if n else 1.0, n


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--num", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", help="write raw/ and data/ here instead of a temporary folder")
    args = p.parse_args()
    import mxnet
    print(f"phantom screenshots: {args.num}, seed {args.seed}; mxnet {mxnet.__version__}, "
          f"opencv {cv2.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        raw, data = root / "raw", root / "data"
        phantom.generate(raw, args.num, seed=args.seed, progress=False)
        t0 = time.perf_counter()
        summary = prepare_data.main(prepare_data.parse_args(
            ["--raw", str(raw), "--out", str(data), "--no-progress"]))
        seconds = time.perf_counter() - t0
        rec = recovery(raw, data)
        base, n_red = baseline(raw)
    print(f"sources {summary['sources']}, samples {summary['samples']}, boxes {rec['n_truth']}, "
          f"red-box boxes {n_red}, seconds {seconds:.2f}")
    print(f"misses: {[(m['file'], round(m['iou'], 3)) for m in rec['misses']]}")
    print(f"min_iou: {rec['min_iou']:.4f}")
    print(f"recovery: {rec['rate']:.4f} notes_recipe_recovery: {base:.4f} "
          f"mean_iou: {rec['mean_iou']:.4f} screenshots_per_s: {args.num / seconds:.2f}")


if __name__ == "__main__":
    main()
