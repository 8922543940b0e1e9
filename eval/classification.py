"""Binary classification metrics for scores in any range (the filter's tanh in [-1, 1]).

Labels may be ±1, 0/1 or booleans; the positive class is +1 / 1 / True. A prediction is
positive when ``score >= threshold``. Definitions follow scikit-learn (checked to 1e-9 in
tests/test_eval_classification.py): confusion matrix ``[[tn, fp], [fn, tp]]``, a ratio with a
zero denominator is 0.0 (sklearn's ``zero_division`` default), PR curve and average precision
as ``precision_recall_curve`` / ``average_precision_score``, ROC as ``roc_curve`` (with its
leading ``inf`` threshold) and ``roc_auc_score``. Curves that need both classes raise a
``ValueError`` saying which class is missing instead of returning NaN. numpy only.
"""
import logging

import numpy as np

log = logging.getLogger(__name__)


def as_binary_labels(y_true, name="y_true"):
    """Boolean positives from labels in {-1, +1}, {0, 1} or booleans.

    Raises
    ------
    ValueError
        Other values, or a mixture such as {-1, 0, 1}.
    """
    y = np.asarray(y_true).reshape(-1)
    if y.dtype == bool:
        return y
    try:
        values = set(np.unique(y).tolist())
    except TypeError:
        values = set(y.tolist())
    if not (values <= {-1, 1} or values <= {0, 1}):
        raise ValueError(f"{name}: want labels in {{-1, +1}} or {{0, 1}}, got values "
                         f"{sorted(values, key=str)[:6]}")
    return y == 1


def _scores(scores, n=None):
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if n is not None and len(s) != n:
        raise ValueError(f"scores: want {n} values (one per label), got {len(s)}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores: {int(np.sum(~np.isfinite(s)))} non-finite value(s)")
    return s


def _both(y_true, scores):
    y = as_binary_labels(y_true)
    return y, _scores(scores, len(y))


def predict(scores, threshold=0.0):
    """Boolean predictions ``score >= threshold``."""
    return _scores(scores) >= threshold


def _div(a, b):
    return float(a) / float(b) if b else 0.0


# --------------------------------------------------------------------------- at one threshold
def confusion_matrix(y_true, y_pred):
    """2×2 counts ``[[tn, fp], [fn, tp]]`` (rows true, columns predicted; negative first).

    Parameters
    ----------
    y_true, y_pred : array_like
        Labels (±1, 0/1 or bool); use :func:`predict` to turn scores into ``y_pred``.
    """
    t = as_binary_labels(y_true)
    p = as_binary_labels(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} labels, y_pred {len(p)}")
    tp = int(np.sum(t & p))
    fp = int(np.sum(~t & p))
    fn = int(np.sum(t & ~p))
    tn = int(np.sum(~t & ~p))
    return np.array([[tn, fp], [fn, tp]], dtype=np.int64)


def fbeta_from_counts(tp, fp, fn, beta):
    """F-beta = (1 + b²) tp / ((1 + b²) tp + b² fn + fp); 0.0 when nothing is positive."""
    b2 = float(beta) ** 2
    return _div((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)


def binary_metrics(y_true, y_pred):
    """Counts and rates of one set of predictions.

    Returns
    -------
    dict
        ``tp, fp, tn, fn, n_pos, n_neg, accuracy, precision, recall, specificity, f1, f2,
        f0_5`` (a ratio with a zero denominator is 0.0).
    """
    (tn, fp), (fn, tp) = confusion_matrix(y_true, y_pred).tolist()
    n = tp + fp + tn + fn
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "n_pos": tp + fn, "n_neg": tn + fp,
            "accuracy": _div(tp + tn, n), "precision": _div(tp, tp + fp),
            "recall": _div(tp, tp + fn), "specificity": _div(tn, tn + fp),
            "f1": fbeta_from_counts(tp, fp, fn, 1), "f2": fbeta_from_counts(tp, fp, fn, 2),
            "f0_5": fbeta_from_counts(tp, fp, fn, 0.5)}


def accuracy(y_true, y_pred):
    return binary_metrics(y_true, y_pred)["accuracy"]


def precision(y_true, y_pred):
    return binary_metrics(y_true, y_pred)["precision"]


def recall(y_true, y_pred):
    return binary_metrics(y_true, y_pred)["recall"]


def f1_score(y_true, y_pred):
    return binary_metrics(y_true, y_pred)["f1"]


def fbeta_score(y_true, y_pred, beta):
    """F-beta of predictions (beta 2 weighs recall more, 0.5 precision)."""
    m = binary_metrics(y_true, y_pred)
    return fbeta_from_counts(m["tp"], m["fp"], m["fn"], beta)


def metrics_at(y_true, scores, threshold=0.0):
    """:func:`binary_metrics` of ``score >= threshold``, plus the threshold."""
    y, s = _both(y_true, scores)
    return {**binary_metrics(y, s >= threshold), "threshold": float(threshold)}


# --------------------------------------------------------------------------- curves
def _counts_by_threshold(y, s):
    """Cumulative (fps, tps) at each distinct score, descending (sklearn _binary_clf_curve)."""
    order = np.argsort(s, kind="mergesort")[::-1]
    s = s[order]
    y = y[order]
    idx = np.r_[np.where(np.diff(s))[0], len(y) - 1]
    tps = np.cumsum(y)[idx].astype(np.float64)
    fps = 1 + idx - tps
    return fps, tps, s[idx]


def _require(y, need_pos, need_neg, what):
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    missing = []
    if need_pos and n_pos == 0:
        missing.append("positive")
    if need_neg and n_neg == 0:
        missing.append("negative")
    if missing:
        raise ValueError(f"{what} needs {' and '.join(missing)} samples; got {n_pos} positive "
                         f"and {n_neg} negative of {len(y)}")


def pr_curve(y_true, scores):
    """Precision-recall curve, as ``sklearn.metrics.precision_recall_curve``.

    Returns
    -------
    precision, recall : ndarray
        Decreasing-threshold order reversed (recall decreasing), ending with (1, 0).
    thresholds : ndarray
        Increasing distinct scores, one shorter than ``precision``.

    Raises
    ------
    ValueError
        No positive sample (recall undefined).
    """
    y, s = _both(y_true, scores)
    _require(y, True, False, "a PR curve")
    fps, tps, thr = _counts_by_threshold(y, s)
    ps = tps + fps
    prec = np.zeros_like(tps)
    np.divide(tps, ps, out=prec, where=ps != 0)
    rec = tps / tps[-1]
    return np.r_[prec[::-1], 1.0], np.r_[rec[::-1], 0.0], thr[::-1]


def average_precision(y_true, scores):
    """Step-wise area under the PR curve (``sklearn.metrics.average_precision_score``)."""
    prec, rec, _ = pr_curve(y_true, scores)
    return float(max(0.0, -np.sum(np.diff(rec) * prec[:-1])))


def roc_curve(y_true, scores, drop_intermediate=True):
    """ROC curve, as ``sklearn.metrics.roc_curve``.

    Returns
    -------
    fpr, tpr : ndarray
    thresholds : ndarray
        Decreasing; the first is ``inf`` (nothing predicted positive).

    Raises
    ------
    ValueError
        Only one class present.
    """
    y, s = _both(y_true, scores)
    _require(y, True, True, "a ROC curve")
    fps, tps, thr = _counts_by_threshold(y, s)
    if drop_intermediate and len(fps) > 2:
        keep = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps, tps, thr = np.r_[0, fps], np.r_[0, tps], np.r_[np.inf, thr]
    return fps / fps[-1], tps / tps[-1], thr


def roc_auc(y_true, scores):
    """Area under the ROC curve (trapezoids; ``sklearn.metrics.roc_auc_score``)."""
    fpr, tpr, _ = roc_curve(y_true, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


def threshold_sweep(y_true, scores):
    """Every distinct score as a threshold (``score >= t`` is positive), descending.

    Returns
    -------
    dict of ndarray
        ``thresholds, tp, fp, tn, fn, precision, recall, f1, fpr, tpr, youden`` (J = tpr -
        fpr); ratios with a zero denominator are 0.
    """
    y, s = _both(y_true, scores)
    if len(y) == 0:
        raise ValueError("threshold sweep of an empty set")
    fps, tps, thr = _counts_by_threshold(y, s)
    n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
    fn = n_pos - tps
    tn = n_neg - fps
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(tps + fps > 0, tps / (tps + fps), 0.0)
        rec = tps / n_pos if n_pos else np.zeros_like(tps)
        f1 = np.where(2 * tps + fps + fn > 0, 2 * tps / (2 * tps + fps + fn), 0.0)
        fpr = fps / n_neg if n_neg else np.zeros_like(fps)
    return {"thresholds": thr, "tp": tps, "fp": fps, "tn": tn, "fn": fn, "precision": prec,
            "recall": rec, "f1": f1, "fpr": fpr, "tpr": rec, "youden": rec - fpr,
            "n_pos": int(n_pos), "n_neg": int(n_neg)}


def best_f1_threshold(y_true, scores):
    """Threshold (a score value) with the highest F1; on equal F1 the highest threshold.

    Returns
    -------
    dict
        :func:`metrics_at` at that threshold.

    Raises
    ------
    ValueError
        No positive sample (F1 is 0 everywhere).
    """
    y, s = _both(y_true, scores)
    _require(y, True, False, "a best-F1 threshold")
    sw = threshold_sweep(y, s)
    return metrics_at(y, s, float(sw["thresholds"][int(np.argmax(sw["f1"]))]))


def recall_threshold(y_true, scores, min_recall=0.95):
    """The highest threshold (a score value) whose recall is at least ``min_recall``: the
    most a screening filter may reject while keeping that share of the positives.

    Returns
    -------
    dict
        :func:`metrics_at` at that threshold.

    Raises
    ------
    ValueError
        No positive sample, or ``min_recall`` outside (0, 1].
    """
    if not 0.0 < min_recall <= 1.0:
        raise ValueError(f"min_recall must be in (0, 1], got {min_recall}")
    y, s = _both(y_true, scores)
    _require(y, True, False, "a recall-constrained threshold")
    sw = threshold_sweep(y, s)
    k = int(np.flatnonzero(sw["recall"] >= min_recall - 1e-12)[0])  # thresholds descend
    return metrics_at(y, s, float(sw["thresholds"][k]))


def youden_threshold(y_true, scores):
    """Threshold maximising Youden's J = TPR - FPR (highest threshold on ties).

    Returns
    -------
    dict
        :func:`metrics_at` at that threshold plus ``youden``.

    Raises
    ------
    ValueError
        Only one class present.
    """
    y, s = _both(y_true, scores)
    _require(y, True, True, "Youden's J")
    sw = threshold_sweep(y, s)
    k = int(np.argmax(sw["youden"]))
    return {**metrics_at(y, s, float(sw["thresholds"][k])), "youden": float(sw["youden"][k])}


def summarize(y_true, scores, threshold=0.0):
    """Everything a report needs about one scored set at one threshold.

    Returns
    -------
    dict
        :func:`metrics_at` keys plus ``auc`` and ``average_precision`` (None, with
        ``note``, when a class is missing).
    """
    out = metrics_at(y_true, scores, threshold)
    notes = []
    for key, fn in (("auc", roc_auc), ("average_precision", average_precision)):
        try:
            out[key] = fn(y_true, scores)
        except ValueError as e:
            out[key] = None
            notes.append(str(e))
    if notes:
        out["note"] = "; ".join(notes)
    return out
