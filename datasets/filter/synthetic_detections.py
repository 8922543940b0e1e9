"""Stand-in detector output for the filter: jittered ground truth plus look-alike false alarms.

The filter trains on a detector's out-of-fold predictions. For unit tests, and to try the
filter before a detector exists, this makes detections with the same mix: boxes near each
ground-truth box (tight ones become positives, loose ones negatives), boxes on the phantom's
look-alikes (vessels and cysts present on both sides: the false alarms the reference
comparison should reject; from ``RAW/truth.json``), and random background boxes. Scores
rise with the IoU plus noise, look-alikes score high, background low.

Usage::

    python -m datasets.filter.synthetic_detections --data DATA --truth RAW/truth.json \
        --split train --out oof_detections.json --seed 0
"""
import argparse
import json
import logging
from pathlib import Path

import numpy as np

from datasets.filter.crops.folder import move_and_rescale, read_gt_boxes
from datasets.prepared.folder import MANIFEST, manifest_by_id, read_splits
from eval.detection import box_iou
from eval.detection_io import write_detections_json

log = logging.getLogger(__name__)


def _jitter(box, rng, amount):
    shift = rng.uniform(-amount, amount, (1, 2))  # drawn before the scale, as always
    return move_and_rescale(box, shift, rng.uniform(-amount, amount, (1, 2)))[0].tolist()


def _clip(box, size):
    if size is None:
        return box
    w, h = size
    return [min(max(box[0], 0.0), w), min(max(box[1], 0.0), h),
            min(max(box[2], 0.0), w), min(max(box[3], 0.0), h)]


def synthetic_detections(gt, rng, image_size=None, lookalikes=(), n_jitter=2,
                         jitter=(0.02, 0.6), n_random=2, lookalike_jitter=0.1,
                         score_noise=0.1):
    """Fake detections of one image.

    Parameters
    ----------
    gt : array-like, shape (M, 4)
        Ground-truth boxes ``[x1, y1, x2, y2]`` in half pixels.
    rng : numpy.random.Generator
    image_size : (W, H), optional
        Clip boxes to the image; also the area random boxes are drawn from (required when
        ``n_random`` > 0).
    lookalikes : array-like, shape (L, 4)
        Look-alike boxes (false alarms a detector makes); each gets one detection.
    n_jitter : int
        Detections per ground-truth box.
    jitter : (float, float)
        Range of the jitter amplitude (fraction of the box size) drawn per detection: the
        low end gives positives, the high end boxes that miss (IoU < 0.5).
    n_random : int
        Background boxes per image (sizes like the ground truth, anywhere in the image).
    lookalike_jitter : float
    score_noise : float
        Standard deviation of the noise added to the scores.

    Returns
    -------
    dict
        ``{"boxes": [[x1, y1, x2, y2], ...], "scores": [...], "labels": [0, ...]}`` with
        scores in (0, 1), in the Detections JSON form (docs/CONTRACTS.md).
    """
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    boxes, scores = [], []
    for g in gt:
        for _ in range(n_jitter):
            b = _clip(_jitter(g, rng, rng.uniform(*jitter)), image_size)
            boxes.append(b)
            iou = box_iou([b], [g], offset=0)[0, 0]     # continuous IoU
            scores.append(0.3 + 0.6 * iou + rng.normal(0, score_noise))
    for la in np.asarray(lookalikes, dtype=np.float64).reshape(-1, 4):
        boxes.append(_clip(_jitter(la, rng, lookalike_jitter), image_size))
        scores.append(rng.uniform(0.3, 0.9) + rng.normal(0, score_noise))
    if n_random:
        if image_size is None:
            raise ValueError("n_random > 0 needs image_size=(W, H)")
        w_img, h_img = image_size
        sizes = (gt[:, 2:] - gt[:, :2]) if len(gt) else np.array([[w_img / 6, h_img / 6]])
        for _ in range(n_random):
            w, h = sizes[rng.integers(len(sizes))] * np.exp(rng.uniform(-0.3, 0.3, 2))
            w, h = min(w, w_img - 1), min(h, h_img - 1)
            x1, y1 = rng.uniform(0, w_img - w), rng.uniform(0, h_img - h)
            boxes.append([x1, y1, x1 + w, y1 + h])
            scores.append(rng.uniform(0.05, 0.5) + rng.normal(0, score_noise))
    keep = [i for i, b in enumerate(boxes) if b[2] - b[0] >= 2 and b[3] - b[1] >= 2]
    return {"boxes": [[float(v) for v in boxes[i]] for i in keep],
            "scores": [float(np.clip(scores[i], 0.01, 0.99)) for i in keep],
            "labels": [0] * len(keep)}


def lookalikes_in_half(truth, manifest_row):
    """Look-alike boxes of ``truth.json`` that fall inside a sample's detection half, in half
    pixels (boxes cut by the half's edge are dropped)."""
    src = Path(manifest_row["source"]).stem
    images = {Path(im["file"]).stem: im for im in truth.get("images", [])}
    im = images.get(src)
    if im is None:
        return np.zeros((0, 4))
    ox, oy = float(manifest_row["x_offset"]), float(manifest_row["y_offset"])
    w, h = float(manifest_row["width"]), float(manifest_row["height"])
    out = []
    for la in im.get("lookalikes", []):
        b = np.asarray(la["box"], dtype=np.float64) - [ox, oy, ox, oy]
        if b[0] >= 0 and b[1] >= 0 and b[2] <= w and b[3] <= h:
            out.append(b)
    return np.asarray(out).reshape(-1, 4)


def synthetic_detections_json(data_dir, ids, seed=0, truth=None, **kwargs):
    """Detections JSON (docs/CONTRACTS.md) with :func:`synthetic_detections` for ``ids``.

    Parameters
    ----------
    data_dir : str or Path
        Prepared data (manifest.csv, Annotations/).
    ids : list of str
    seed : int
        Image ``i`` uses ``numpy.random.default_rng([seed, i])``: same seed, same output.
    truth : dict, optional
        Parsed ``RAW/truth.json``; its look-alikes become false alarms.
    **kwargs
        Passed to :func:`synthetic_detections`.
    """
    manifest = manifest_by_id(data_dir)
    images = {}
    for i, image_id in enumerate(ids):
        if image_id not in manifest:
            raise KeyError(f"id {image_id!r} not in {Path(data_dir) / MANIFEST}")
        row = manifest[image_id]
        size = (float(row["width"]), float(row["height"]))
        la = lookalikes_in_half(truth, row) if truth else np.zeros((0, 4))
        images[image_id] = synthetic_detections(read_gt_boxes(data_dir, image_id),
                                                np.random.default_rng([seed, i]), size, la,
                                                **kwargs)
    return {"classes": ["lesion"], "coords": "half", "images": images}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--data", required=True, help="prepared data folder")
    p.add_argument("--truth", default=None, help="RAW/truth.json of a phantom set (look-alikes)")
    p.add_argument("--split", choices=["train", "test", "all"], default="train",
                   help="ids from splits.json (default: %(default)s)")
    p.add_argument("--out", required=True, help="detections JSON to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return p.parse_args(argv)


def main(args):
    splits = read_splits(args.data)
    ids = splits["train"] + splits["test"] if args.split == "all" else splits[args.split]
    truth = None
    if args.truth:
        with open(args.truth, encoding="utf-8") as f:
            truth = json.load(f)
    dets = synthetic_detections_json(args.data, ids, args.seed, truth)
    write_detections_json(args.out, dets["images"], dets["classes"])
    n = sum(len(v["boxes"]) for v in dets["images"].values())
    return {"images": len(ids), "boxes": n, "out": str(args.out)}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(main(parse_args())))
