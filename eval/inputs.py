"""What ``python -m eval.detection`` accepts: each input recognised by content, loaded as tables.

Ground truth (``--gt``): a Cartucho ``ground-truth/`` folder of ``NAME.txt``, a folder of VOC
``NAME.xml``, or a COCO instances JSON file. Detections (``--dr``): a Cartucho
``detection-results/`` folder, a detections JSON object (docs/CONTRACTS.md) or a COCO results
JSON list. A COCO results list names categories by id, so it needs COCO instances ground
truth; other detections paired with COCO instances are matched to images by the stem of each
image's ``file_name`` (the name Cartucho files and our JSON use). Detections of classes
outside the class list are dropped and counted; inverted detection boxes are kept (see
:mod:`eval.detection_io`). Standard library and numpy only.
"""
from pathlib import Path

import numpy as np

from eval.coco_io import instances_from_doc, is_instances_doc, is_results_doc, results_from_doc
from eval.detection_io import (
    FormatError, detections_from_doc, is_detections_doc, load_json, read_voc_dir,
    table_from_detections, table_from_ground_truth, _read_cartucho_tables, _read_dr_table,
    _Classes)


def _by_file_stem(gt, images, path):
    """Re-key COCO ground truth by the stem of each image's file_name."""
    out = {}
    for image_id, entry in gt.items():
        stem = Path(str(images[image_id].get("file_name", image_id))).stem
        if stem in out:
            raise FormatError(f"{path}: two images have the file name stem {stem!r}; detections "
                              f"other than a COCO results list are matched to images by it")
        out[stem] = entry
    return out


def _read_ground_truth(gt_path, classes):
    """Returns (gt dict, classes, COCO meta or None)."""
    if gt_path.is_dir():
        xml = not any(gt_path.glob("*.txt")) and any(gt_path.glob("*.xml"))
        if xml:
            gt, classes = read_voc_dir(gt_path, classes)
        else:
            gt_t, _, classes = _read_cartucho_tables(gt_path, None, classes)
            gt = gt_t.to_dict("difficult", bool)
        return gt, classes, None
    if not gt_path.is_file():
        raise FileNotFoundError(f"{gt_path}: no such folder or file (want a Cartucho "
                                f"ground-truth folder, a VOC XML folder or a COCO instances .json)")
    doc = load_json(gt_path)
    if not is_instances_doc(doc):
        raise FormatError(f"{gt_path}: a ground-truth file must be COCO instances JSON (an object "
                          f"with 'images', 'annotations', 'categories' lists)")
    if classes is not None:
        raise ValueError(f"--classes names the classes of Cartucho and VOC ground truth; "
                         f"{gt_path} names its own categories")
    return instances_from_doc(doc, gt_path)


def _remap_by_name(det, det_classes, classes):
    """Re-index detections onto ``classes`` by name; detections of other names are dropped.

    Returns (det, {dropped class name: count})."""
    if det_classes == classes:
        return det, {}
    index = {c: k for k, c in enumerate(classes)}
    remap = np.array([index.get(c, -1) for c in det_classes] or [-1], dtype=np.int64)
    out, ignored = {}, {}
    for image_id, e in det.items():
        lab = remap[e["labels"]]
        keep = lab >= 0
        for name_k in np.asarray(e["labels"])[~keep]:
            name = det_classes[int(name_k)]
            ignored[name] = ignored.get(name, 0) + 1
        out[image_id] = {"boxes": e["boxes"][keep], "scores": e["scores"][keep],
                         "labels": lab[keep]}
    return out, ignored


def load_inputs(gt_path, dr_path, classes=None):
    """Load a ground-truth / detections pair in any accepted form (module docstring).

    Parameters
    ----------
    gt_path, dr_path : str or Path
    classes : list of str, optional
        Class names in index order (Cartucho / VOC ground truth only); default the names
        found in the ground truth (COCO: category names in ascending id order).

    Returns
    -------
    gt_table, dr_table : eval.detection_io._Table
        Aligned on the ground-truth images; ``dr_table.notes`` holds ``ignored`` and
        ``first_inverted``.
    classes : list of str
    gt_area : ndarray or None
        COCO annotation areas per ground-truth row (COCO instances only).
    """
    gt_path, dr_path = Path(gt_path), Path(dr_path)
    if gt_path.is_dir() and dr_path.is_dir() and any(gt_path.glob("*.txt")):
        # both Cartucho folders: the fast path, no per-image dicts
        gt_t, dr_t, classes = _read_cartucho_tables(gt_path, dr_path, classes)
        return gt_t, dr_t, classes, None
    gt, classes, coco = _read_ground_truth(gt_path, classes)
    notes = {}
    if dr_path.is_dir():
        if coco:
            gt = _by_file_stem(gt, coco["images"], gt_path)
        dr_t = _read_dr_table(dr_path, list(gt), _Classes(classes), gt_path)
        det = None
    elif not dr_path.is_file():
        raise FileNotFoundError(f"{dr_path}: no such folder or file (want a Cartucho "
                                f"detection-results folder, a detections .json or a COCO "
                                f"results .json)")
    else:
        doc = load_json(dr_path)
        if is_results_doc(doc):
            if not coco:
                raise FormatError(f"{dr_path} is a COCO results list: its category_id values "
                                  f"need the categories of COCO instances ground truth, but "
                                  f"--gt {gt_path} is not one (write it with "
                                  f"eval.coco_io.write_coco_instances)")
            det, notes = results_from_doc(doc, coco["category_ids"], list(gt), dr_path)
        elif is_detections_doc(doc):
            det, det_classes = detections_from_doc(doc, dr_path)
            det, ignored = _remap_by_name(det, det_classes, classes)
            notes = {"ignored": ignored}
            if coco:
                gt = _by_file_stem(gt, coco["images"], gt_path)
        else:
            raise FormatError(f"{dr_path}: want a detections JSON object ('classes', 'images') "
                              f"or a COCO results list [{{image_id, category_id, bbox, score}}]")
    gt_t = table_from_ground_truth(gt, len(classes))
    if det is not None:
        dr_t = table_from_detections(det, list(gt), len(classes), source=f"{dr_path}: image")
        dr_t.notes.update({k: v for k, v in notes.items() if v is not None})
    area = np.concatenate([e["area"] for e in gt.values()]) if coco and gt else None
    return gt_t, dr_t, classes, area
