"""A crop folder: build it from a prepared folder and detections, or reuse one built earlier.

``build_crop_folder`` makes the training crops from out-of-fold detections and the test
crops from the final model's, each split through ``build_crop_set``: select and label the
detections, search and fuse (in worker processes when asked), write the PNGs, then the
index and its preview, and ``crops.json`` last. ``load_crops`` reads the PNGs of an index
back.
"""
import logging
import zlib
from pathlib import Path

import cv2
import numpy as np

from datasets.filter.crops.fusion import CROP_SIZE, clip_boxes, crops_for_detections
from datasets.filter.crops.index import contact_sheet, write_index
from datasets.filter.crops.labels import label_boxes, select_detections
from datasets.filter.crops.options import read_crop_options, write_crop_options
from datasets.prepared.folder import read_splits
from datasets.prepared.voc import read_voc

log = logging.getLogger(__name__)


def read_gray(path):
    """Read an image as 2-D uint8 grey; raise FileNotFoundError naming the path."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return img


def read_gt_boxes(data_dir, image_id):
    """Ground-truth boxes (M, 4) of ``image_id`` from ``DATA/Annotations/<id>.xml``."""
    ann = read_voc(Path(data_dir) / "Annotations" / f"{image_id}.xml")
    return np.asarray([o["box"] for o in ann["objects"]], dtype=np.float64).reshape(-1, 4)


def random_boxes(image_id, shape, sizes, n, seed=0):
    """``n`` boxes (n, 4) placed uniformly inside an image of ``shape`` (h, w), each with the
    (w, h) of a row of ``sizes`` drawn at random: the generated negatives of --add-random.

    The generator is seeded by ``seed`` and the image id, so the boxes do not depend on the
    order or the process in which images are built.
    """
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    if n <= 0 or not len(sizes):
        return np.zeros((0, 4))
    rng = np.random.default_rng([int(seed), zlib.crc32(image_id.encode("utf-8"))])
    h, w = shape
    wh = np.minimum(sizes[rng.integers(len(sizes), size=n)], [w - 1, h - 1])
    x1 = rng.uniform(0, w - 1 - wh[:, 0])
    y1 = rng.uniform(0, h - 1 - wh[:, 1])
    return np.stack([x1, y1, x1 + wh[:, 0], y1 + wh[:, 1]], axis=1)


def move_and_rescale(boxes, shift, log_scale):
    """``boxes`` (N, 4) with each centre moved by ``shift`` (N, 2) times the box's width and
    height and each side multiplied by ``exp(log_scale)`` (N, 2): the jitter of --add-jitter
    and of ``datasets.filter.synthetic_detections``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    size = boxes[:, 2:] - boxes[:, :2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + shift * size
    size = size * np.exp(log_scale)
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


#: --add-jitter: each box moved by up to this fraction of its width and height...
JITTER_SHIFT = 0.5
#: ...and each side rescaled by a factor between exp(-JITTER_LOG_SCALE) and its inverse.
JITTER_LOG_SCALE = 0.4


def jittered_boxes(image_id, gt, shape, n, seed=0):
    """``n`` boxes per ground-truth box of ``gt`` (M, 4): the box moved by up to
    ``JITTER_SHIFT`` of its size along each axis and each side rescaled log-uniformly by up to
    ``exp(JITTER_LOG_SCALE)`` (:func:`move_and_rescale`), clipped to the image ``shape`` (h,
    w); boxes narrower than 2 pixels after clipping are dropped. The generated crops of
    --add-jitter: about 85 % of them overlap their lesion with an IoU between 0.1 and 0.5, the
    poorly placed boxes that count as false positives and the background range Fast R-CNN
    trains its classifier on.

    The generator is seeded by ``seed`` and the image id (a stream other than
    :func:`random_boxes`'), so the boxes do not depend on the order or the process in which
    images are built.
    """
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    if n <= 0 or not len(gt):
        return np.zeros((0, 4))
    rng = np.random.default_rng([int(seed), zlib.crc32(image_id.encode("utf-8")), 1])
    src = np.repeat(gt, n, axis=0)
    shift = rng.uniform(-JITTER_SHIFT, JITTER_SHIFT, (len(src), 2))
    boxes = move_and_rescale(src, shift, rng.uniform(-JITTER_LOG_SCALE, JITTER_LOG_SCALE,
                                                     (len(src), 2)))
    h, w = shape
    boxes = np.clip(boxes, 0, [w - 1, h - 1, w - 1, h - 1])
    ok = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
    return boxes[ok]


def _image_rows(task):
    """Crops and index rows of one image (a module-level function so a Pool can run it)."""
    (data_dir, image_id, det, gt, opts, sizes) = task
    lesion = read_gray(Path(data_dir) / "JPEGImages" / f"{image_id}.jpg")
    ref_path = Path(data_dir) / "Reference" / f"{image_id}.jpg"
    if not ref_path.exists():
        raise FileNotFoundError(f"{ref_path}: the filter compares with the reference half; "
                                "prepare the data without --no-split")
    reference = read_gray(ref_path)
    boxes = np.asarray(det.get("boxes", []), dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(det.get("scores", []), dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"detections of {image_id}: {len(boxes)} boxes but {len(scores)} scores")
    keep = select_detections(scores, opts["min_score"], opts["top_k"])
    boxes, scores = boxes[keep], scores[keep]
    h, w = lesion.shape
    # Detectors may return boxes a little outside the half: crop the clipped box, but keep
    # the detector's own box in the index (eval/two_stage.py matches rows to detections).
    clipped = clip_boxes(boxes, (h, w))
    ok = (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    if not ok.all():
        log.warning("%s: %d box(es) outside the image skipped: %s", image_id, (~ok).sum(),
                    boxes[~ok].round(1).tolist())
    boxes, clipped, scores = boxes[ok], clipped[ok], scores[ok]
    origin = ["det"] * len(boxes)
    # Extra boxes (training crops only): no detector score, labelled by the IoU rule below.
    n_random, n_jitter = int(opts.get("add_random") or 0), int(opts.get("add_jitter") or 0)
    extras = {"gt": np.reshape(gt, (-1, 4)) if opts["add_gt"] else np.zeros((0, 4)),
              "random": random_boxes(image_id, (h, w), sizes, n_random, opts.get("seed", 0)),
              "jitter": jittered_boxes(image_id, gt, (h, w), n_jitter, opts.get("seed", 0))}
    for name, extra in extras.items():
        boxes, clipped = np.concatenate([boxes, extra]), np.concatenate([clipped, extra])
        scores = np.concatenate([scores, np.full(len(extra), np.nan)])
        origin += [name] * len(extra)
    ious, labels = label_boxes(boxes, gt, opts["iou"])
    crops, matches = crops_for_detections(lesion, reference, clipped, opts["search"],
                                          opts["size"])
    rows = []
    for i, box in enumerate(boxes):
        m = matches[i]
        rows.append({"image_id": image_id, "x1": box[0], "y1": box[1], "x2": box[2],
                     "y2": box[3], "score": scores[i], "iou": ious[i], "label": int(labels[i]),
                     "dx": getattr(m, "dx", 0), "dy": getattr(m, "dy", 0),
                     "match_distance": getattr(m, "distance", float("nan")),
                     "origin": origin[i]})
    return crops, rows


def build_crop_set(data_dir, detections, ids, out_dir, split, options, gt_boxes=None):
    """Build the fused crops of one split and write PNGs, the index CSV and a preview.

    Parameters
    ----------
    data_dir : str or Path
        Prepared data folder (docs/CONTRACTS.md "Prepared data").
    detections : dict
        ``{"<id>": {"boxes": [[x1, y1, x2, y2], ...], "scores": [...]}}`` in half pixels
        (the ``images`` entry of a Detections JSON).
    ids : list of str
        Images of this split; an id without detections contributes only --add-gt boxes.
    out_dir : str or Path
        Crop folder; PNGs go to ``out_dir/<split>/``.
    split : str
        "train" or "test".
    options : dict
        ``min_score, top_k, iou, add_gt, size, search`` (find_similar keywords), ``workers``;
        optional ``add_random`` (boxes per image, sized like this split's ground truth),
        ``add_jitter`` (boxes per ground-truth box, moved and rescaled from it) and ``seed``.
    gt_boxes : dict, optional
        ``{id: (M, 4) array}``; read from the VOC annotations when omitted.

    Returns
    -------
    crops : ndarray of uint8, shape (N, size, size, 3)
    rows : list of dict, the index rows (with ``path``)
    """
    out_dir = Path(out_dir)
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    gts = {i: gt_boxes[i] if gt_boxes is not None else read_gt_boxes(data_dir, i) for i in ids}
    # --add-random boxes take the sizes of this split's ground-truth boxes
    all_gt = np.concatenate([g for g in gts.values() if len(g)] or [np.zeros((0, 4))])
    sizes = all_gt[:, 2:] - all_gt[:, :2]
    sizes = sizes[np.lexsort(sizes.T[::-1])]  # whatever the order of ids
    tasks = [(str(data_dir), i, detections.get(i, {}), gts[i], options, sizes) for i in ids]
    workers = int(options.get("workers", 1) or 1)
    if workers > 1 and len(tasks) > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(workers) as pool:
            results = pool.map(_image_rows, tasks, chunksize=max(1, len(tasks) // (4 * workers)))
    else:
        results = [_image_rows(t) for t in tasks]
    size = options["size"]
    all_crops = [c for c, _ in results if len(c)]
    crops = np.concatenate(all_crops) if all_crops else np.zeros((0, size, size, 3), np.uint8)
    rows = [r for _, rs in results for r in rs]
    for n, (crop, row) in enumerate(zip(crops, rows)):
        row["path"] = f"{split}/{n:06d}.png"
        # PNG channel order is BGR for OpenCV; store c1, c2, c3 as R, G, B.
        if not cv2.imwrite(str(out_dir / row["path"]), crop[:, :, ::-1]):
            raise OSError(f"could not write {out_dir / row['path']}")
    write_index(out_dir / f"{split}.csv", rows)
    if len(rows):
        contact_sheet(crops, rows, out_dir / f"{split}_preview.png")
    n_pos = sum(r["label"] == 1 for r in rows)
    log.info("%s crops: %d (%d positive, %d negative) from %d images", split, len(rows), n_pos,
             len(rows) - n_pos, len(ids))
    return crops, rows


def build_crop_folder(data_dir, detections_json, test_detections_json, out_dir, options):
    """Build the training crops from out-of-fold detections (``splits.json`` "train" ids)
    and, if given, the test crops (its "test" ids; never with --add-gt, --add-random or
    --add-jitter boxes).

    Parameters
    ----------
    data_dir : str or Path
    detections_json, test_detections_json : str or Path (the second may be None)
        Detections JSON files (docs/CONTRACTS.md).
    out_dir : str or Path
    options : dict
        As for :func:`build_crop_set`.

    Returns
    -------
    dict, the options (also written to ``crops.json``, last).
    """
    from eval.detection_io import read_detections_json

    def read(path, what):
        if not Path(path).exists():
            raise FileNotFoundError(f"{what} {path} not found")
        return read_detections_json(path)[0]

    splits = read_splits(data_dir)
    oof = read(detections_json, "--detections")
    train_ids = list(splits["train"])
    missing = [i for i in train_ids if i not in oof]
    if missing:
        log.warning("%d training id(s) have no out-of-fold detections (e.g. %s); they add "
                    "no detection crops", len(missing), missing[:3])
    train_set = set(train_ids)
    extra = [i for i in oof if i not in train_set]
    if extra:
        log.warning("the out-of-fold detections hold %d id(s) outside the training ids "
                    "(e.g. %s); ignored", len(extra), extra[:3])
    build_crop_set(data_dir, oof, train_ids, out_dir, "train", options)
    if test_detections_json:
        test = read(test_detections_json, "--test-detections")
        # Test crops mirror the detector's output only.
        build_crop_set(data_dir, test, list(splits["test"]), out_dir, "test",
                       dict(options, add_gt=False, add_random=0, add_jitter=0))
    write_crop_options(out_dir, options)
    return options


def reuse_crop_folder(crop_dir, options):
    """Crops built earlier: ``(crop_dir, the options they were built with)``; warns when they
    differ from ``options`` (the recorded ones win)."""
    crop_dir = Path(crop_dir)
    theirs = read_crop_options(crop_dir)
    if theirs is None:
        raise FileNotFoundError(f"--crops {crop_dir}: no crops.json there; point it at the "
                                "crops/ folder of an earlier train_filter run")
    differ = {k: (theirs.get(k), v) for k, v in options.items()
              if k != "workers" and theirs.get(k) != v}
    if differ:
        log.warning("reusing crops built with other options (theirs, requested): %s", differ)
    return crop_dir, theirs


def load_crops(crop_dir, rows):
    """Read the PNGs of ``rows`` (paths relative to ``crop_dir``) into (N, S, S, 3) uint8."""
    crops = []
    for r in rows:
        img = cv2.imread(str(Path(crop_dir) / r["path"]), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"crop {Path(crop_dir) / r['path']} listed in the index "
                                    "is missing or unreadable")
        crops.append(img[:, :, ::-1])
    if not crops:
        return np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    return np.ascontiguousarray(np.stack(crops))
