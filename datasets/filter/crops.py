"""Fused crops for the filter network: detected box | matched reference region | difference.

For every detection kept (score >= ``min_score``, the ``top_k`` best of its image) the box
content of the detection half and the most similar region of the contralateral (reference)
half, found by :func:`datasets.filter.similar.find_similar`, are resized to ``size``×``size`` and
stacked with their difference into one 3-channel uint8 image (notes 002, "过滤网络 /
准备数据集"). A crop is labelled +1 when its box overlaps a ground-truth box with IoU >= ``iou``,
else −1.

Channel 3 is the **signed difference, halved and shifted**: ``(c1 - c2) // 2 + 128``
(int arithmetic, exactly in [0, 255], so no clipping). Signed, because the sign carries the
finding: strain lesions are hypo-echoic (darker than the healthy side, c3 < 128) while a
bright artefact on one side gives c3 > 128; ``|c1 - c2|`` would map both to the same value.
A look-alike present on both sides (vessel, cyst) gives c3 ≈ 128 either way. Halving keeps
the full range without clipping; 128 (mid-grey) means "no difference".

On disk (``build_crop_set``): ``OUT/<split>/<n>.png`` (channels stored as R, G, B = c1, c2, c3)
and ``OUT/<split>.csv`` with the columns of :data:`INDEX_COLUMNS` (docs/CONTRACTS.md
"Filter run"; ``path`` is relative to ``OUT``), written last and atomically, so an index
that exists always describes complete PNGs; plus ``OUT/<split>_preview.png`` and
``OUT/crops.json`` (the options the crops were built with).
"""
import csv
import io
import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np

from eval.runs import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

CROP_SIZE = 128
#: ``origin`` is ``det`` for a detection and ``gt`` for a ground-truth box added by --add-gt.
INDEX_COLUMNS = ["image_id", "x1", "y1", "x2", "y2", "score", "iou", "label", "dx", "dy",
                 "match_distance", "path", "origin"]
DIFFERENCE_FORM = "signed_half_shift"  # c3 = (c1 - c2) // 2 + 128
SEARCH_KEYS = ("feature", "distance", "context", "search_radius", "stride")


def difference_channel(c1, c2):
    """Channel 3 of a fused crop: ``(c1 - c2) // 2 + 128`` as uint8 (see module docstring).

    Parameters
    ----------
    c1, c2 : ndarray of uint8, same shape
        Lesion-half and reference-half content.

    Returns
    -------
    ndarray of uint8, same shape; 128 where the two agree.
    """
    d = (c1.astype(np.int16) - c2.astype(np.int16)) // 2 + 128
    return d.astype(np.uint8)


def add_crop_arguments(parser):
    """Declare the crop-building options (similarity search, selection, labelling).

    train_filter.py declares them; predict.py reads the values back from filter.json.
    """
    g = parser.add_argument_group("fused crops")
    g.add_argument("--feature", default="hog",
                   help="feature compared by the similarity search (see datasets/filter/similar.py; "
                        "default: %(default)s)")
    g.add_argument("--distance", default=None,
                   help="distance for the feature (default: the feature's own)")
    g.add_argument("--context", type=float, default=0.5,
                   help="margin around the box, as a fraction of its size, that forms the "
                        "template ring (default: %(default)s)")
    g.add_argument("--search-radius", type=int, default=24,
                   help="search range around the same position in the reference half, pixels "
                        "(default: %(default)s)")
    g.add_argument("--stride", type=int, default=4,
                   help="step of the sliding window, pixels (default: %(default)s)")
    g.add_argument("--min-score", type=float, default=0.05,
                   help="keep detections with at least this score (default: %(default)s)")
    g.add_argument("--top-k", type=int, default=20,
                   help="keep at most this many detections per image, best first; 0 = all "
                        "(default: %(default)s)")
    g.add_argument("--iou", type=float, default=0.5,
                   help="a crop is positive when its IoU with a ground-truth box reaches this "
                        "(default: %(default)s)")
    g.add_argument("--add-gt", action="store_true",
                   help="add the ground-truth boxes of training images as extra positives "
                        "(never to test crops)")
    g.add_argument("--crop-size", type=int, default=CROP_SIZE,
                   help="side of the fused crop, pixels (default: %(default)s)")
    g.add_argument("--crop-workers", type=int, default=1,
                   help="processes that build crops in parallel (default: %(default)s)")
    return g


def search_kwargs_from(options):
    """The keyword arguments of ``find_similar`` from a Namespace or dict of options."""
    get = options.get if isinstance(options, dict) else (lambda k: getattr(options, k))
    return {k: get(k) for k in SEARCH_KEYS}


# ---------------------------------------------------------------- selection and labels

def select_detections(scores, min_score=0.0, top_k=0):
    """Indices of the detections to keep: score >= ``min_score``, best ``top_k`` (0 = all).

    Parameters
    ----------
    scores : array-like of float, shape (N,)
    min_score : float
    top_k : int

    Returns
    -------
    ndarray of int, indices into ``scores`` in decreasing score order (stable for ties).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] >= min_score]
    if top_k and top_k > 0:
        order = order[:top_k]
    return order


#: Box convention of the crop labels: the detector's scores' (train_yolo3.OFFSET, the VOC
#: devkit's +1), so a crop labelled +1 is a detection the detection metrics count as a hit.
IOU_OFFSET = 1


def box_iou(boxes, gt_boxes):
    """IoU matrix of ``boxes`` (N, 4) against ``gt_boxes`` (M, 4), pixels, offset 1."""
    from eval.detection import box_iou as iou
    return iou(boxes, gt_boxes, offset=IOU_OFFSET)


def label_boxes(boxes, gt_boxes, iou_threshold=0.5):
    """Best IoU of each box with any ground-truth box and its ±1 label.

    Parameters
    ----------
    boxes : array-like, shape (N, 4)
        Detections ``[x1, y1, x2, y2]`` in half pixels.
    gt_boxes : array-like, shape (M, 4)
        Ground truth of the same image (M may be 0: every box is then negative).
    iou_threshold : float
        Positive when the best IoU is >= this.

    Returns
    -------
    ious : ndarray of float, shape (N,)
    labels : ndarray of int, shape (N,), values +1 / −1
    """
    iou = box_iou(boxes, gt_boxes)
    # + 0.0 turns the -0.0 of empty intersections into 0.0 (cosmetic, in the CSV)
    best = (iou.max(axis=1) if iou.shape[1] else np.zeros(iou.shape[0])) + 0.0
    return best, np.where(best >= iou_threshold, 1, -1).astype(np.int64)


# ---------------------------------------------------------------- fusing

def _cut(gray, box):
    """Pixels of ``box`` (float xyxy) in ``gray``; parts outside the image are edge-replicated,
    so a box touching the border still yields its full size."""
    h, w = gray.shape[:2]
    x1, y1 = int(math.floor(box[0])), int(math.floor(box[1]))
    x2, y2 = int(math.ceil(box[2])), int(math.ceil(box[3]))
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if cx1 >= cx2 or cy1 >= cy2:
        raise ValueError(f"box {list(box)} lies outside the {w}x{h} image")
    patch = gray[cy1:cy2, cx1:cx2]
    pads = (cy1 - y1, y2 - cy2, cx1 - x1, x2 - cx2)
    if any(pads):
        patch = cv2.copyMakeBorder(patch, *pads, cv2.BORDER_REPLICATE)
    return patch


def _resize(patch, size):
    h, w = patch.shape[:2]
    # INTER_AREA averages when shrinking (no aliasing of the speckle); linear when enlarging.
    interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def _match_box(match, box):
    if match is None:
        return tuple(box)
    if hasattr(match, "box"):
        return tuple(match.box)
    return tuple(match)


def fuse_crop(lesion_gray, reference_gray, box, match, size=CROP_SIZE):
    """Build one fused crop.

    Parameters
    ----------
    lesion_gray, reference_gray : ndarray of uint8, shape (H, W) and (H', W')
        Detection half and its reference half, grey.
    box : sequence of 4 floats
        Detected box ``[x1, y1, x2, y2]`` in lesion-half pixels.
    match : Match, sequence of 4 floats or None
        Result of ``find_similar`` (its ``box`` is in reference pixels; when it carries a
        ``query_box``, channel 1 is cut there instead of ``box``), a reference box, or None
        for "the same position".
    size : int
        Side of the output.

    Returns
    -------
    ndarray of uint8, shape (size, size, 3)
        Channel 0 = box content, 1 = matched reference content, 2 = ``difference_channel``.
    """
    if lesion_gray.ndim != 2 or reference_gray.ndim != 2:
        raise ValueError(f"fuse_crop wants 2-D grey images, got shapes {lesion_gray.shape} "
                         f"and {reference_gray.shape}")
    # find_similar reports the pixel box it actually searched for (rounded, clipped); cut
    # channel 1 there so both sides cover the same pixels and the offset is exact.
    query = getattr(match, "query_box", None) or box
    c1 = _resize(_cut(lesion_gray, query), size)
    c2 = _resize(_cut(reference_gray, _match_box(match, box)), size)
    return np.dstack([c1, c2, difference_channel(c1, c2)])


def clip_boxes(boxes, shape):
    """Boxes (N, 4) clipped to an image of ``shape`` (H, W); a new float64 array."""
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, shape[1])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, shape[0])
    return boxes


def crops_for_detections(lesion_gray, reference_gray, boxes, search_kwargs, size=CROP_SIZE):
    """Search the reference half for every box and fuse the crops (used by predict.py).

    Parameters
    ----------
    lesion_gray, reference_gray : ndarray of uint8, 2-D
    boxes : array-like, shape (N, 4)
        Boxes in lesion-half pixels; clipped to the lesion half before the search (a box
        wholly outside raises ValueError: drop those first).
    search_kwargs : dict
        Keyword arguments of ``datasets.filter.similar.find_similar`` (feature, distance, context,
        search_radius, stride).
    size : int

    Returns
    -------
    crops : ndarray of uint8, shape (N, size, size, 3)
    matches : list of Match, one per box
    """
    from datasets.filter.similar import Match, NoRingError, find_similar, pixel_box
    boxes = clip_boxes(boxes, lesion_gray.shape)
    crops = np.zeros((len(boxes), size, size, 3), np.uint8)
    matches = []
    for i, box in enumerate(boxes):
        try:
            match = find_similar(lesion_gray, reference_gray, tuple(box), **search_kwargs)
        except NoRingError:
            # A box filling the half (an untrained detector's favourite) has no surroundings
            # to search with: compare it with the same place, as the panels are aligned.
            shape = tuple(min(a, b) for a, b in zip(lesion_gray.shape, reference_gray.shape))
            pb = tuple(int(v) for v in pixel_box(box, shape))
            match = Match(box=pb, dx=0, dy=0, distance=float("nan"), query_box=pb)
        crops[i] = fuse_crop(lesion_gray, reference_gray, box, match, size)
        matches.append(match)
    return crops, matches


# ---------------------------------------------------------------- data folder access

def read_gray(path):
    """Read an image as 2-D uint8 grey; raise FileNotFoundError naming the path."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return img


def read_gt_boxes(data_dir, image_id):
    """Ground-truth boxes (M, 4) of ``image_id`` from ``DATA/Annotations/<id>.xml``."""
    from datasets.prepared.voc import read_voc
    ann = read_voc(Path(data_dir) / "Annotations" / f"{image_id}.xml")
    return np.asarray([o["box"] for o in ann["objects"]], dtype=np.float64).reshape(-1, 4)


def _image_rows(task):
    """Crops and index rows of one image (a module-level function so a Pool can run it)."""
    (data_dir, image_id, det, gt, opts) = task
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
    if opts["add_gt"] and len(gt):
        boxes, clipped = np.concatenate([boxes, gt]), np.concatenate([clipped, gt])
        scores = np.concatenate([scores, np.full(len(gt), np.nan)])
        origin += ["gt"] * len(gt)
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
        ``min_score, top_k, iou, add_gt, size, search`` (find_similar keywords), ``workers``.
    gt_boxes : dict, optional
        ``{id: (M, 4) array}``; read from the VOC annotations when omitted.

    Returns
    -------
    crops : ndarray of uint8, shape (N, size, size, 3)
    rows : list of dict, the index rows (with ``path``)
    """
    out_dir = Path(out_dir)
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    tasks = []
    for image_id in ids:
        gt = gt_boxes[image_id] if gt_boxes is not None else read_gt_boxes(data_dir, image_id)
        tasks.append((str(data_dir), image_id, detections.get(image_id, {}), gt, options))
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
    and, if given, the test crops (its "test" ids; never with --add-gt boxes).

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

    splits_path = Path(data_dir) / "splits.json"
    if not splits_path.exists():
        raise FileNotFoundError(f"{splits_path} not found: run prepare_data.py first")
    splits = json.loads(splits_path.read_text(encoding="utf-8"))
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
                       dict(options, add_gt=False))
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


def write_index(path, rows):
    """Write the crop index CSV atomically (columns :data:`INDEX_COLUMNS` + any extra)."""
    fields = list(INDEX_COLUMNS)
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else f"{float(v):.6g}"
    if isinstance(v, np.integer):
        return int(v)
    return v


def read_index(path):
    """Read a crop index CSV into a list of dicts with numeric fields parsed.

    Empty numeric cells (the score of an --add-gt box) become NaN.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"crop index {path} not found; build crops first or point "
                                "--crops at a folder holding train.csv / test.csv")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in INDEX_COLUMNS if c not in (reader.fieldnames or [])
                   and c != "origin"]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; want {INDEX_COLUMNS}")
        rows = []
        for r in reader:
            for k in ("x1", "y1", "x2", "y2", "score", "iou", "dx", "dy", "match_distance"):
                r[k] = float(r[k]) if r[k] != "" else float("nan")
            r["label"] = int(r["label"])
            if r["label"] not in (-1, 1):
                raise ValueError(f"{path}: label must be +1 or -1, got {r['label']}")
            r.setdefault("origin", "det")
            rows.append(r)
    return rows


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


def write_crop_options(out_dir, options):
    """Record the options a crop folder was built with (``crops.json``)."""
    atomic_write_json(Path(out_dir) / "crops.json", dict(options, difference=DIFFERENCE_FORM))


def read_crop_options(out_dir):
    p = Path(out_dir) / "crops.json"
    if not p.exists():
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------- preview

def contact_sheet(crops, rows, path, per_class=12, tile=80):
    """Write a preview: positives (left column) and negatives (right column), highest score
    first, up to ``per_class`` each; every entry shows [channel 1 | channel 2 | channel 3]
    under a caption with label, score, IoU and match offset."""
    def top(label):
        idx = [i for i, r in enumerate(rows) if (r["label"] == 1) == (label == 1)]
        return sorted(idx, key=lambda i: -np.nan_to_num(rows[i]["score"], nan=2.0))[:per_class]

    columns = [top(1), top(-1)]
    pad, text_h = 4, 14
    cell_w, cell_h = 3 * tile + 2 * pad, tile + text_h
    n = max(1, max(len(c) for c in columns))
    sheet = np.full((pad + n * (cell_h + pad), pad + 2 * (cell_w + 2 * pad), 3), 40, np.uint8)
    for col, idx in enumerate(columns):
        x0 = pad + col * (cell_w + 2 * pad)
        for k, i in enumerate(idx):
            y = pad + k * (cell_h + pad)
            r = rows[i]
            colour = (60, 200, 60) if r["label"] == 1 else (60, 60, 220)  # BGR green / red
            score = "gt" if np.isnan(r["score"]) else f"{r['score']:.2f}"
            cv2.putText(sheet, f"{r['label']:+d} s={score} iou={r['iou']:.2f} "
                               f"d=({r['dx']:.0f},{r['dy']:.0f})",
                        (x0, y + text_h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1,
                        cv2.LINE_AA)
            for c in range(3):
                x = x0 + c * (tile + pad)
                ch = cv2.resize(crops[i][:, :, c], (tile, tile), interpolation=cv2.INTER_AREA)
                sheet[y + text_h:y + text_h + tile, x:x + tile] = ch[:, :, None]
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:
        raise OSError(f"could not encode preview {path}")
    from eval.runs import atomic_write_bytes
    atomic_write_bytes(path, buf.tobytes())
    return path
