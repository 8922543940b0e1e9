"""Detector alone vs detector + filter on the same images (the notes' claim, measured).

The filter is a gate: a detection survives when its filter score reaches the threshold chosen
on validation; survivors keep their detector score, so both AP curves rank by the same score.
Detections the filter never scored (below its ``--min-score`` or past its top-k) are not
survivors. numpy only.
"""
import numpy as np

from eval import detection


def attach_filter_scores(det, rows):
    """Align per-crop filter scores with a detections dict.

    Parameters
    ----------
    det : dict
        ``{id: {"boxes": (M, 4), "scores": (M,), "labels": (M,)}}``.
    rows : iterable of dict
        One per scored detection with ``image_id``, ``x1, y1, x2, y2`` and ``filter_score``
        (the filter run's ``test_scores.csv`` rows).

    Returns
    -------
    dict
        ``{id: (M,) float}``, ``nan`` for detections without a filter score.

    Raises
    ------
    ValueError
        A row whose box is not among that image's detections (files from different runs).
    """
    out = {i: np.full(len(d["scores"]), np.nan) for i, d in det.items()}
    for r in rows:
        image_id = r["image_id"]
        if image_id not in det:
            raise ValueError(f"filter row for {image_id!r}, which has no detections")
        box = np.array([float(r[k]) for k in ("x1", "y1", "x2", "y2")])
        boxes = np.asarray(det[image_id]["boxes"], dtype=float).reshape(-1, 4)
        err = np.abs(boxes - box).max(axis=1) if len(boxes) else np.array([])
        if not len(err) or err.min() > 0.51:
            raise ValueError(f"filter row box {box.tolist()} of {image_id!r} matches none of its "
                             f"{len(boxes)} detections: were they made by another detector run?")
        out[image_id][int(np.argmin(err))] = float(r["filter_score"])
    return out


def gate(det, filter_scores, threshold):
    """Detections whose filter score is ``>= threshold`` (unscored ones are dropped)."""
    kept = {}
    for i, d in det.items():
        fs = np.asarray(filter_scores.get(i, np.full(len(d["scores"]), np.nan)))
        keep = np.nan_to_num(fs, nan=-np.inf) >= threshold
        kept[i] = {k: np.asarray(v)[keep] for k, v in d.items() if k in ("boxes", "scores", "labels")}
    return kept


def _stage_metrics(gt, det, classes, det_threshold, iou, offset):
    res = detection.evaluate(gt, det, classes, iou=iou, offset=offset)
    op = detection.operating_point(gt, det, det_threshold, iou=iou, offset=offset)
    out = {"test_map_voc12": res["map_voc12"], "test_map_voc07": res["map_voc07"],
           "n_detections": int(sum(len(d["scores"]) for d in det.values()))}
    out.update({k: op[k] for k in ("precision", "recall", "f1", "fp_per_image", "tp", "fp", "fn",
                                   "score_threshold")})
    return out, res


def compare(gt, det, filter_scores, filter_threshold, det_threshold, classes, iou=0.5, *,
            offset):
    """Metrics of the detector alone and of detector + filter on one test set.

    Parameters
    ----------
    gt : dict
        Ground truth, see :func:`eval.detection.match_detections`.
    det : dict
        The detector's detections on the same images.
    filter_scores : dict
        ``{id: (M,) float}`` aligned with ``det`` (see :func:`attach_filter_scores`).
    filter_threshold : float
        Filter score threshold, chosen on validation.
    det_threshold : float
        Detector score threshold of the operating point, chosen without the test set (for
        example the best-F2 threshold on out-of-fold detections); used by both rows.
    classes : list of str
    iou, offset
        Matching settings, see :func:`eval.detection.match_detections` (``offset`` is
        required: the caller states its pixel convention).

    Returns
    -------
    dict
        ``detector`` and ``two_stage`` rows (``test_map_voc12``, ``test_map_voc07``,
        ``precision``, ``recall``, ``f1``, ``fp_per_image``, counts), ``curves`` (the first
        class's PR curve of each, in :func:`eval.plots.plot_pr_curves`'s format, operating
        point marked), and the kept detections under ``two_stage_detections``.
    """
    kept = gate(det, filter_scores, filter_threshold)
    det_row, det_res = _stage_metrics(gt, det, classes, det_threshold, iou, offset)
    two_row, two_res = _stage_metrics(gt, kept, classes, det_threshold, iou, offset)
    two_row["filter_threshold"] = float(filter_threshold)
    cls = classes[0]
    curves = [{"label": name, "recall": res["per_class"][cls]["recall"],
               "precision": res["per_class"][cls]["precision"],
               "ap": res["per_class"][cls]["ap_voc12"],
               "point": (row["recall"], row["precision"])}
              for name, res, row in (("detector only", det_res, det_row),
                                     ("detector + filter", two_res, two_row))]
    return {"detector": det_row, "two_stage": two_row, "curves": curves,
            "two_stage_detections": kept}


SWEEP_KEYS = ("precision", "recall", "f1", "fp_per_image")


def operating_sweep(gt, det, filter_scores, thresholds, iou=0.5, *, offset):
    """The filter's effect at several detector operating points, on one set.

    One operating point says little when the detector alone is already precise there (the
    gain in precision is bounded by ``1 - precision``); the sweep shows what the filter does
    to the detections the detector keeps at each threshold, from the candidates the filter
    was trained on up to the strictest point.

    Parameters
    ----------
    gt, det, filter_scores
        As for :func:`compare`.
    thresholds : iterable of (float, float)
        ``(detector threshold, filter threshold)`` pairs; each filter threshold must be
        chosen without this set (e.g. by the filter's rule on validation crops at that
        detector threshold).
    iou, offset
        Matching settings of :func:`eval.detection.match_detections`.

    Returns
    -------
    list of dict
        Per pair: ``det_threshold``, ``filter_threshold``, ``detector_<k>`` and
        ``two_stage_<k>`` for ``k`` in :data:`SWEEP_KEYS`, ``precision_gain`` (two-stage minus
        detector precision) and ``recall_ratio`` (two-stage over detector recall; nan when
        the detector finds nothing).
    """
    rows = []
    for det_threshold, filter_threshold in thresholds:
        kept = gate(det, filter_scores, filter_threshold)
        row = {"det_threshold": float(det_threshold),
               "filter_threshold": float(filter_threshold)}
        for name, d in (("detector", det), ("two_stage", kept)):
            op = detection.operating_point(gt, d, det_threshold, iou=iou, offset=offset)
            row.update({f"{name}_{k}": float(op[k]) for k in SWEEP_KEYS})
        row["precision_gain"] = row["two_stage_precision"] - row["detector_precision"]
        row["recall_ratio"] = (row["two_stage_recall"] / row["detector_recall"]
                               if row["detector_recall"] > 0 else float("nan"))
        rows.append(row)
    return rows
