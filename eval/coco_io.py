"""Read and write COCO JSON: instances ground truth and results lists, mapped to our dicts.

- Instances (ground truth): ``{"images": [{"id", "file_name", "width", "height"}, ...],
  "annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h], "area",
  "iscrowd"}, ...], "categories": [{"id", "name"}, ...]}``.
- Results (detections, what pycocotools' ``loadRes`` and most ports write):
  ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``.

Boxes map as ``[x1, y1, x2, y2] = [x, y, x + w, y + h]`` (pixels, continuous) and back as
``w = x2 - x1``; the round trip may move ``x2`` by one unit in the last place. Image ids are
ints or strings, kept as they are. Categories map by id to names; our label ``k`` is the
``k``-th category id in ascending order (pycocotools' ``catIds`` order). ``iscrowd`` is our
``difficult`` flag both ways (eval/coco.py says why). The dicts are those of
:mod:`eval.detection_io`; ground truth read from instances also carries ``"area"`` (COCO's
annotation area, which pycocotools uses for its area ranges). Standard library and numpy only.

Like pycocotools, a result whose ``category_id`` is not a ground-truth category is dropped
(counted in ``notes["ignored"]``) and a result with a negative width or height is kept;
ground truth is strict (unknown image or category, negative size, duplicate id: FormatError).
"""
import logging

import numpy as np

from eval.detection_io import FormatError, ignored_message, load_json

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- document kinds
def is_instances_doc(doc):
    """True for a parsed COCO instances file (an object with images/annotations/categories)."""
    return isinstance(doc, dict) and all(isinstance(doc.get(k), list)
                                         for k in ("images", "annotations", "categories"))


def is_results_doc(doc):
    """True for a parsed COCO results file: a list (of result objects; may be empty)."""
    return isinstance(doc, list) and all(isinstance(r, dict) for r in doc[:1])


def _bbox(value, where, negative_ok):
    try:
        b = np.asarray(value, dtype=np.float64).reshape(4)
    except (TypeError, ValueError):
        raise FormatError(f"{where}: want bbox [x, y, w, h] (4 numbers), got {value!r}") from None
    if not np.isfinite(b).all():
        raise FormatError(f"{where}: bbox must be finite numbers, got {b.tolist()}")
    if not negative_ok and (b[2] < 0 or b[3] < 0):
        raise FormatError(f"{where}: want bbox [x, y, w, h] with w >= 0 and h >= 0, got "
                          f"{b.tolist()}")
    return b


def _id_index(items, what, path):
    index = {}
    for k, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item:
            raise FormatError(f"{path}: {what} #{k}: want an object with an 'id', got {item!r}")
        if item["id"] in index:
            raise FormatError(f"{path}: {what} id {item['id']!r} appears twice "
                              f"(#{index[item['id']]} and #{k})")
        index[item["id"]] = k
    return index


# --------------------------------------------------------------------------- instances
def instances_from_doc(doc, path="instances"):
    """:func:`read_coco_instances` on an already parsed document (``path`` for messages)."""
    if not is_instances_doc(doc):
        raise FormatError(f"{path}: want a COCO instances object with lists 'images', "
                          f"'annotations' and 'categories'")
    _id_index(doc["categories"], "category", path)
    cats = sorted(doc["categories"], key=lambda c: c["id"])
    classes = [str(c.get("name", c["id"])) for c in cats]
    if len(set(classes)) != len(classes):
        raise FormatError(f"{path}: category names must be unique (they name the classes), got "
                          f"{classes}")
    label_of = {c["id"]: k for k, c in enumerate(cats)}
    image_index = _id_index(doc["images"], "image", path)
    images = {img["id"]: dict(img) for img in doc["images"]}
    rows = {i: [] for i in images}
    _id_index(doc["annotations"], "annotation", path)
    for k, ann in enumerate(doc["annotations"]):
        where = f"{path}: annotation #{k} (id {ann.get('id')!r})"
        if ann.get("image_id") not in image_index:
            raise FormatError(f"{where}: image_id {ann.get('image_id')!r} is not among the "
                              f"{len(images)} images")
        if ann.get("category_id") not in label_of:
            raise FormatError(f"{where}: category_id {ann.get('category_id')!r} is not among the "
                              f"categories {sorted(label_of)}")
        b = _bbox(ann.get("bbox"), where, negative_ok=False)
        area = ann.get("area", b[2] * b[3])
        rows[ann["image_id"]].append((b, label_of[ann["category_id"]],
                                      bool(ann.get("iscrowd", 0)), float(area)))
    gt = {}
    for image_id, r in rows.items():
        b = np.array([x[0] for x in r], dtype=np.float64).reshape(-1, 4)
        gt[image_id] = {"boxes": np.c_[b[:, :2], b[:, :2] + b[:, 2:]],
                        "labels": np.array([x[1] for x in r], dtype=np.int64),
                        "difficult": np.array([x[2] for x in r], dtype=bool),
                        "area": np.array([x[3] for x in r], dtype=np.float64)}
    return gt, classes, {"category_ids": [c["id"] for c in cats], "images": images}


def read_coco_instances(path):
    """Ground truth from a COCO instances JSON file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    gt : dict
        ``{image_id: {"boxes": (N, 4) [x1, y1, x2, y2], "labels", "difficult" (iscrowd),
        "area"}}`` for every image of ``images`` (in file order), annotations in file order.
    classes : list of str
        Category names in ascending id order.
    meta : dict
        ``category_ids`` (ascending; ``category_ids[label]``) and ``images``
        (``{image_id: the image object}``, with ``file_name``, ``width``, ``height`` if given).

    Raises
    ------
    FormatError
        Not an instances object, a duplicate id, an annotation of an unknown image or
        category, a bbox that is not 4 finite numbers or has a negative width or height.
    """
    return instances_from_doc(load_json(path), path)


# --------------------------------------------------------------------------- results
def results_from_doc(doc, category_ids, image_ids, path="results"):
    """:func:`read_coco_results` on an already parsed list; also returns the notes.

    Returns
    -------
    det : dict
    notes : dict
        ``ignored`` ({"category_id N": count}) and ``first_inverted`` (where, or None).
    """
    if not is_results_doc(doc):
        raise FormatError(f"{path}: want a COCO results list [{{image_id, category_id, bbox, "
                          f"score}}, ...]")
    label_of = {c: k for k, c in enumerate(category_ids)}
    known = set(image_ids)
    per_image = {}
    ignored, first_inverted = {}, None
    for k, r in enumerate(doc):
        where = f"{path}: result #{k}"
        if not isinstance(r, dict) or not {"image_id", "category_id", "bbox", "score"} <= set(r):
            raise FormatError(f"{where}: want keys image_id, category_id, bbox, score, got "
                              f"{sorted(r) if isinstance(r, dict) else r!r}")
        if r["image_id"] not in known:
            raise FormatError(f"{where}: image_id {r['image_id']!r} has no ground truth (as "
                              f"pycocotools, every result's image must be in the ground truth)")
        b = _bbox(r["bbox"], where, negative_ok=True)
        try:
            score = float(r["score"])
        except (TypeError, ValueError):
            score = float("nan")
        if not np.isfinite(score):
            raise FormatError(f"{where}: score must be a finite number, got {r['score']!r}")
        lab = label_of.get(r["category_id"])
        if lab is None:
            key = f"category_id {r['category_id']}"
            ignored[key] = ignored.get(key, 0) + 1
            continue
        if first_inverted is None and (b[2] < 0 or b[3] < 0):
            first_inverted = where
        per_image.setdefault(r["image_id"], []).append((b, score, lab))
    det = {}
    for image_id, rows in per_image.items():
        b = np.array([x[0] for x in rows], dtype=np.float64).reshape(-1, 4)
        det[image_id] = {"boxes": np.c_[b[:, :2], b[:, :2] + b[:, 2:]],
                         "scores": np.array([x[1] for x in rows], dtype=np.float64),
                         "labels": np.array([x[2] for x in rows], dtype=np.int64)}
    return det, {"ignored": ignored, "first_inverted": first_inverted}


def read_coco_results(path, category_ids, image_ids):
    """Detections from a COCO results JSON list.

    Parameters
    ----------
    path : str or Path
    category_ids : list
        The ground truth's category ids in label order (``read_coco_instances``'s
        ``meta["category_ids"]``). A result of another category is dropped and counted, with a
        log warning, as pycocotools drops it.
    image_ids : iterable
        The ground truth's image ids; a result for another image is a :class:`FormatError`.

    Returns
    -------
    dict
        ``{image_id: {"boxes": (M, 4) [x1, y1, x2, y2], "scores", "labels"}}`` for the images
        with results, rows in file order. Negative widths/heights (inverted boxes) are kept.
    """
    det, notes = results_from_doc(load_json(path), category_ids, image_ids, path)
    msg = ignored_message(notes["ignored"])
    if msg:
        log.warning("%s: %s", path, msg)
    return det


# --------------------------------------------------------------------------- writing
def coco_image_ids(image_ids):
    """``{our id: 1-based int}`` in the order given: integer COCO image ids for the writers.

    Pass the same mapping to :func:`write_coco_instances` and :func:`write_coco_results` so
    results refer to the ground truth's images.
    """
    return {i: k + 1 for k, i in enumerate(image_ids)}


def _category_ids(classes, category_ids):
    ids = list(range(1, len(classes) + 1)) if category_ids is None else list(category_ids)
    if len(ids) != len(classes) or len(set(ids)) != len(ids):
        raise ValueError(f"want {len(classes)} distinct category ids for classes {classes}, "
                         f"got {ids}")
    return ids


def _xywh_list(boxes):
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.c_[b[:, :2], b[:, 2:] - b[:, :2]].tolist()


def to_coco_instances(gt, classes, image_ids=None, image_info=None, category_ids=None):
    """Our ground truth as a COCO instances object (see :func:`write_coco_instances`)."""
    cat = _category_ids(classes, category_ids)
    image_ids, image_info = image_ids or {}, image_info or {}
    doc = {"images": [], "annotations": [],
           "categories": [{"id": c, "name": str(n)} for c, n in zip(cat, classes)]}
    for image_id, e in gt.items():
        info = {"id": image_ids.get(image_id, image_id), "file_name": f"{image_id}.jpg",
                **image_info.get(image_id, {})}
        doc["images"].append(info)
        boxes = np.asarray(e["boxes"], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(e["labels"]).reshape(-1)
        diff = e.get("difficult")
        diff = np.zeros(len(labels), bool) if diff is None else np.asarray(diff).reshape(-1)
        for b, lab, d in zip(_xywh_list(boxes), labels, diff):
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": info["id"],
                                       "category_id": cat[int(lab)], "bbox": b,
                                       "area": b[2] * b[3], "iscrowd": int(bool(d))})
    return doc


def write_coco_instances(path, gt, classes, image_ids=None, image_info=None, category_ids=None):
    """Write ground truth as a COCO instances JSON file, atomically.

    Parameters
    ----------
    path : str or Path
    gt : dict
        ``{image_id: {"boxes": (N, 4) [x1, y1, x2, y2], "labels", "difficult" (optional)}}``;
        difficult boxes are written as ``iscrowd: 1``.
    classes : list of str
        Category names in label order.
    image_ids : dict, optional
        ``{our id: COCO image id}``, e.g. :func:`coco_image_ids` for integers (what most COCO
        tools expect); default our ids unchanged.
    image_info : dict, optional
        ``{our id: {"file_name": ..., "width": W, "height": H}}``, added to each image object
        (default ``file_name`` ``"<our id>.jpg"``).
    category_ids : list of int, optional
        Category id of each class; default 1, 2, ... (0 is often read as background).

    Returns
    -------
    pathlib.Path
    """
    from infra.atomic import atomic_write_json  # here: the CLI's start-up does not need it
    return atomic_write_json(path, to_coco_instances(gt, classes, image_ids, image_info,
                                                     category_ids))


def to_coco_results(det, classes, image_ids=None, category_ids=None):
    """Our detections as a COCO results list (see :func:`write_coco_results`)."""
    cat = _category_ids(classes, category_ids)
    image_ids = image_ids or {}
    out = []
    for image_id, e in det.items():
        boxes = np.asarray(e["boxes"], dtype=np.float64).reshape(-1, 4)
        for b, s, lab in zip(_xywh_list(boxes), np.asarray(e["scores"], np.float64).reshape(-1),
                             np.asarray(e["labels"]).reshape(-1)):
            out.append({"image_id": image_ids.get(image_id, image_id),
                        "category_id": cat[int(lab)], "bbox": b, "score": float(s)})
    return out


def write_coco_results(path, det, classes, image_ids=None, category_ids=None):
    """Write detections as a COCO results JSON list, atomically.

    Parameters
    ----------
    path : str or Path
    det : dict
        ``{image_id: {"boxes": (M, 4) [x1, y1, x2, y2], "scores", "labels"}}``.
    classes : list of str
        Class names in label order (only their number is used: categories are ids here).
    image_ids : dict, optional
        ``{our id: COCO image id}``, the mapping given to :func:`write_coco_instances`
        (e.g. :func:`coco_image_ids`); default our ids unchanged.
    category_ids : list of int, optional
        As in :func:`write_coco_instances` (default 1, 2, ...).

    Returns
    -------
    pathlib.Path
    """
    from infra.atomic import atomic_write_json
    return atomic_write_json(path, to_coco_results(det, classes, image_ids, category_ids))
