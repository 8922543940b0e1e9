"""The filter's operating threshold and the scores of a set of crops at it.

The threshold is chosen on validation crops only and applied unchanged to the test crops
(train_filter.py). The metrics are ``eval.classification``'s; this module adds the choice
rule, the per-set plots, and the metrics that must not fail on a tiny validation part.
"""
import logging

import numpy as np

from eval import classification, plots

log = logging.getLogger(__name__)


def add_threshold_arguments(parser):
    """Declare --threshold-rule, --keep-recall and --det-threshold."""
    g = parser.add_argument_group("threshold")
    g.add_argument("--threshold-rule", choices=("recall", "f1"), default="recall",
                   help="how the threshold is chosen on validation crops at the detector's "
                        "operating point: 'recall' keeps --keep-recall of the lesions, 'f1' the "
                        "best F1 (default: %(default)s)")
    g.add_argument("--keep-recall", type=float, default=0.95,
                   help="share of validation positives the 'recall' rule keeps "
                        "(default: %(default)s)")
    g.add_argument("--det-threshold", type=float, default=None,
                   help="the detector's operating threshold (default: score_threshold of the "
                        "model.json beside --detections, if any); the filter's threshold is "
                        "chosen on detections scoring at least this")
    return g


def choose_threshold(labels, scores, det_scores, det_threshold=None, rule="recall",
                     keep_recall=0.95):
    """The filter's threshold, from validation crops only.

    The filter acts on the detections the detector keeps, so the threshold is chosen on the
    validation crops of detections scoring at least the detector's operating threshold
    ``det_threshold`` (all of them without one). ``recall``: the highest threshold keeping
    ``keep_recall`` of those positives (a screening filter should not cost lesions the
    detector found); ``f1``: the best F1 there.

    Parameters
    ----------
    labels : ndarray, (N,) in {-1, 1}
    scores : ndarray, (N,) filter scores in [-1, 1]
    det_scores : ndarray, (N,) the detector's scores of the crops (inf for ground-truth boxes)

    Returns
    -------
    float
        0 (the hinge loss's own sign rule) when no positive is left to choose on.
    """
    sel = det_scores >= det_threshold if det_threshold is not None else \
        np.ones(len(labels), bool)
    y, s = labels[sel], scores[sel]
    if not (y == 1).any():
        log.warning("no positive validation crop at the operating point: threshold falls back "
                    "to 0 (sign of score)")
        return 0.0  # the hinge loss's own decision rule (MXNET_TRAPS 38)
    if rule == "recall":
        return classification.recall_threshold(y, s, keep_recall)["threshold"]
    return classification.best_f1_threshold(y, s)["threshold"]


def crop_det_scores(rows):
    """The detector's score of each crop row (``score`` column), ``inf`` for ground-truth
    crops (blank score): those count at every detector threshold."""
    return np.array([float(r["score"]) if r.get("score") not in ("", None) else np.inf
                     for r in rows])


def sweep_pairs(val_rows, det_thresholds, rule="recall", keep_recall=0.95):
    """``(detector threshold, filter threshold)`` pairs for ``eval.two_stage.operating_sweep``:
    at each detector threshold the filter threshold :func:`choose_threshold` picks there, from
    the validation crops alone.

    Parameters
    ----------
    val_rows : list of dict
        train_filter.py's ``val_scores.csv`` rows (``label``, ``filter_score``, ``score``:
        the detector's score, blank for ground-truth crops).
    det_thresholds : iterable of float
    """
    labels = np.array([int(float(r["label"])) for r in val_rows])
    scores = np.array([float(r["filter_score"]) for r in val_rows])
    det_scores = crop_det_scores(val_rows)
    return [(float(t), float(choose_threshold(labels, scores, det_scores, t, rule,
                                              keep_recall)))
            for t in det_thresholds]


def validation_metrics(labels, scores, margin):
    """Per-epoch validation numbers: mean hinge loss at ``margin``, ROC AUC and best F1
    (NaN where undefined: a tiny validation part may hold one class only)."""
    loss = float(np.maximum(0.0, margin - labels * scores).mean()) if len(labels) else \
        float("nan")
    try:
        auc = classification.roc_auc(labels, scores)
    except ValueError:
        auc = float("nan")
    try:
        f1 = classification.best_f1_threshold(labels, scores)["f1"]
    except ValueError:
        f1 = float("nan")
    return {"val_loss": loss, "val_auc": auc, "val_f1": f1}


def score_set(run, name, labels, scores, threshold):
    """``eval.classification.summarize`` at ``threshold`` and the set's plots (PR, ROC,
    threshold sweep, confusion matrix) in ``plots/<name>_*.png``; returns the metrics."""
    m = classification.summarize(labels, scores, threshold)
    y = labels
    if (y == 1).any():
        prec, rec, _ = classification.pr_curve(y, scores)
        plots.plot_pr_curves([{"label": name, "recall": rec, "precision": prec,
                               "ap": m.get("average_precision"),
                               "point": (m["recall"], m["precision"])}],
                             run.path("plots", f"{name}_pr.png"), title=f"PR ({name})")
        plots.plot_threshold_sweep(classification.threshold_sweep(y, scores),
                                   run.path("plots", f"{name}_threshold.png"), chosen=threshold,
                                   title=f"Threshold sweep ({name})")
    if (y == 1).any() and (y != 1).any():
        fpr, tpr, _ = classification.roc_curve(y, scores)
        plots.plot_roc([{"label": name, "fpr": fpr, "tpr": tpr, "auc": m.get("auc"),
                         "point": (1 - m["specificity"], m["recall"])}],
                       run.path("plots", f"{name}_roc.png"), title=f"ROC ({name})")
    cm = classification.confusion_matrix(y, scores >= threshold)
    plots.plot_confusion_matrix(cm, run.path("plots", f"{name}_confusion.png"),
                                title=f"Confusion matrix ({name}, t={threshold:.3g})")
    return m


def class_counts(labels, prefix):
    """``<prefix>_pos`` and ``<prefix>_neg``: the crops labelled 1 and the others."""
    n_pos = int((labels == 1).sum())
    return {f"{prefix}_pos": n_pos, f"{prefix}_neg": len(labels) - n_pos}


def detector_share(labels, prefix="test"):
    """:func:`class_counts` and the detector's crop-level precision: the detector alone
    keeps every crop, so its precision is the positive share."""
    n_pos = int((labels == 1).sum())
    return dict(class_counts(labels, prefix),
                **{f"{prefix}_detector_precision": n_pos / len(labels) if len(labels) else None})
