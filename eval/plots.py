"""Figures for runs and reports, written as PNG files atomically.

Each function takes plain arrays/dicts and a destination path, draws with matplotlib's Agg
canvas (no pyplot: no global figure state, no display needed) and returns the path. Files go
through a temporary file + rename, so a crash never leaves half a PNG.

PR curves (per class or several runs overlaid), ROC curves, confusion-matrix heatmap, training
curves from metrics.csv, the LR range test, cyclical LR schedules, cross-validation folds,
and the threshold sweep of a binary classifier.
"""
import csv
import io
import logging
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from infra.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

DPI = 100


def _figure(n_axes=1, size=(6.4, 4.8), ncols=None):
    ncols = ncols or n_axes
    nrows = math.ceil(n_axes / ncols)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n_axes)]
    return fig, axes


def _save(fig, path):
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    path = atomic_write_bytes(path, buf.getvalue())
    log.debug("wrote %s", path)
    return path


def _fmt_metric(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


# --------------------------------------------------------------------------- PR / ROC
def detection_pr_curves(result, metric="voc12", prefix=""):
    """Curves of :func:`eval.detection.evaluate`'s result, one per class with positives.

    Returns
    -------
    list of dict
        ``{"label", "recall", "precision", "ap"}`` for :func:`plot_pr_curves`.
    """
    curves = []
    for name, d in result["per_class"].items():
        if d["n_pos"] == 0:
            continue
        curves.append({"label": f"{prefix}{name}", "recall": d["recall"],
                       "precision": d["precision"], "ap": d[f"ap_{metric}"]})
    return curves


def plot_pr_curves(curves, path, title="Precision-recall"):
    """Precision against recall for one or several curves (classes, or runs overlaid).

    Parameters
    ----------
    curves : list of dict
        Each ``{"label": str, "recall": array, "precision": array, "ap": float (optional),
        "point": (recall, precision) (optional operating point to mark)}``.
    path : str or Path
        PNG destination.

    Returns
    -------
    pathlib.Path
    """
    fig, (ax,) = _figure()
    for c in curves:
        r = np.asarray(c["recall"], dtype=float)
        p = np.asarray(c["precision"], dtype=float)
        label = c["label"] + (f" (AP {_fmt_metric(c['ap'])})" if "ap" in c else "")
        # the raw curve (its saw-teeth show where false positives come), not the envelope
        line, = ax.plot(r, p, label=label)
        if c.get("point") is not None:
            ax.plot(*c["point"], "o", color=line.get_color())
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_roc(curves, path, title="ROC"):
    """ROC curves.

    Parameters
    ----------
    curves : list of dict
        Each ``{"label", "fpr": array, "tpr": array, "auc": float (optional),
        "point": (fpr, tpr) (optional)}``.
    """
    fig, (ax,) = _figure()
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    for c in curves:
        label = c["label"] + (f" (AUC {_fmt_metric(c['auc'])})" if "auc" in c else "")
        line, = ax.plot(c["fpr"], c["tpr"], label=label)
        if c.get("point") is not None:
            ax.plot(*c["point"], "o", color=line.get_color())
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1),
           ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_confusion_matrix(cm, path, labels=("negative", "positive"), title="Confusion matrix"):
    """Heatmap with the count (and row share) in each cell.

    Parameters
    ----------
    cm : array_like, shape (K, K)
        Rows are true classes, columns predicted (as :func:`eval.classification.confusion_matrix`).
    labels : sequence of str
        Class names, K of them.
    """
    cm = np.asarray(cm)
    fig, (ax,) = _figure(size=(4.8, 4.2))
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]:d}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    return _save(fig, path)


def plot_threshold_sweep(sweep, path, chosen=None, title="Threshold sweep"):
    """Precision, recall and F1 against the decision threshold.

    Parameters
    ----------
    sweep : dict
        :func:`eval.classification.threshold_sweep`'s result (``thresholds``, ``precision``,
        ``recall``, ``f1``).
    chosen : float, optional
        Threshold to mark.
    """
    fig, (ax,) = _figure()
    t = np.asarray(sweep["thresholds"], dtype=float)
    for key in ("precision", "recall", "f1"):
        ax.plot(t, sweep[key], label=key)
    if chosen is not None:
        ax.axvline(chosen, color="k", ls="--", label=f"threshold {chosen:.3g}")
    ax.set(xlabel="threshold (predict positive if score >= threshold)", ylim=(0, 1.02),
           title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_operating_sweep(rows, path, chosen=None,
                         title="Detector alone vs detector + filter by detector threshold"):
    """Precision and recall of both stages against the detector's score threshold.

    Parameters
    ----------
    rows : list of dict
        :func:`eval.two_stage.operating_sweep`'s rows.
    chosen : float, optional
        The operating threshold of the summary, marked.
    """
    fig, (ax,) = _figure()
    rows = sorted(rows, key=lambda r: r["det_threshold"])
    t = [r["det_threshold"] for r in rows]
    for stage, colour in (("detector", "tab:blue"), ("two_stage", "tab:orange")):
        label = "detector alone" if stage == "detector" else "detector + filter"
        ax.plot(t, [r[f"{stage}_precision"] for r in rows], "o-", color=colour,
                label=f"{label}: precision")
        ax.plot(t, [r[f"{stage}_recall"] for r in rows], "s--", color=colour,
                label=f"{label}: recall")
    if chosen is not None:
        ax.axvline(chosen, color="k", ls=":", label=f"operating threshold {chosen:.3g}")
    ax.set(xlabel="detector score threshold", ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


# --------------------------------------------------------------------------- training curves
def read_metrics_csv(csv_path):
    """Numeric columns of a metrics.csv: ``{column: float array}`` (blank or text -> nan);
    columns with no number at all are dropped."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cols = {}
    for key in (rows[0].keys() if rows else []):
        vals = []
        for r in rows:
            try:
                vals.append(float(r.get(key) or "nan"))
            except ValueError:
                vals.append(float("nan"))
        arr = np.array(vals)
        if np.isfinite(arr).any():
            cols[key] = arr
    return cols


def _group(name):
    low = name.lower()
    if "loss" in low:
        return "loss"
    if low == "lr" or low.startswith("lr_") or low.endswith("_lr") or "learning_rate" in low:
        return "learning rate"
    if low in ("seconds", "elapsed_s", "time", "images_per_s") or low.endswith(("_s", "per_s")):
        return "speed"
    return "metrics"


def plot_metrics_csv(csv_path, path, title=None):
    """Training curves from a per-epoch metrics.csv: one panel each for losses, metrics,
    learning rate (log axis) and speed, holding whatever numeric columns exist.

    Parameters
    ----------
    csv_path : str or Path
        CSV with an ``epoch`` column (else the row number is used) and any numeric columns.
    path : str or Path
        PNG destination.
    """
    cols = read_metrics_csv(csv_path)
    x = cols.pop("epoch", None)
    n = len(next(iter(cols.values()))) if cols else 0
    x = np.arange(n) if x is None else x
    groups = {}
    for name, v in cols.items():
        groups.setdefault(_group(name), []).append((name, v))
    order = [g for g in ("loss", "metrics", "learning rate", "speed") if g in groups]
    fig, axes = _figure(max(len(order), 1), size=(5.0, 3.6), ncols=min(max(len(order), 1), 2))
    for ax, g in zip(axes, order):
        for name, v in groups[g]:
            ok = np.isfinite(v)
            ax.plot(x[ok], v[ok], "o-" if ok.sum() < 30 else "-", ms=3, label=name)
        if g == "learning rate" and all(np.nanmin(v) > 0 for _, v in groups[g]):
            ax.set_yscale("log")
        ax.set(xlabel="epoch", title=g)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if not order:
        axes[0].text(0.5, 0.5, f"no numeric columns in {Path(csv_path).name}", ha="center")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_lr_range_test(lrs, losses, path, suggested_lr=None, smoothed=None,
                       title="LR range test"):
    """Loss against learning rate (log axis) with the suggested LR marked.

    Parameters
    ----------
    lrs, losses : array_like
        One value per iteration of the range test.
    suggested_lr : float, optional
    smoothed : array_like, optional
        Smoothed loss drawn over the raw one.
    """
    fig, (ax,) = _figure()
    lrs = np.asarray(lrs, dtype=float)
    ax.plot(lrs, losses, alpha=0.4 if smoothed is not None else 1.0, label="loss")
    if smoothed is not None:
        ax.plot(lrs, smoothed, label="smoothed loss")
    if suggested_lr is not None:
        ax.axvline(suggested_lr, color="r", ls="--", label=f"suggested lr {suggested_lr:.2e}")
    ax.set_xscale("log")
    finite = np.asarray(smoothed if smoothed is not None else losses, dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite):
        lo, hi = np.percentile(finite, [0, 95])
        ax.set_ylim(lo - 0.05 * (hi - lo + 1e-12), hi + 0.2 * (hi - lo + 1e-12))
    ax.set(xlabel="learning rate (log)", ylabel="loss", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_lr_schedules(schedules, path, title="Learning-rate schedules"):
    """LR against iteration for several schedules (e.g. CLR triangular, triangular2,
    exp_range).

    Parameters
    ----------
    schedules : dict
        ``{name: lrs}`` (one LR per iteration) or ``{name: (iterations, lrs)}``.
    """
    fig, (ax,) = _figure(size=(8.0, 4.0))
    for name, s in schedules.items():
        if isinstance(s, tuple) and len(s) == 2:
            it, lr = s
        else:
            lr = s
            it = np.arange(len(lr))
        ax.plot(it, lr, label=name)
    ax.set(xlabel="iteration", ylabel="learning rate", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


# --------------------------------------------------------------------------- cross-validation
def _params_label(params, width=28):
    if isinstance(params, dict):
        text = ", ".join(f"{k}={v}" for k, v in params.items())
    else:
        text = str(params)
    # wrap long parameter strings over lines so tick labels stay readable
    return "\n".join(text[i:i + width] for i in range(0, len(text), width)) or "-"


def plot_cv(rows, path, metric="map_voc12", title=None):
    """Per-fold scores (points) and mean ± std (bar) for each hyper-parameter set.

    Parameters
    ----------
    rows : list of dict
        ``{"set": id, "fold": int, "params": dict or str, metric: float}`` (cv rows of
        summary.json / cv_results.csv). Rows without a finite ``metric`` are skipped.
    metric : str
        Column to plot.

    Returns
    -------
    pathlib.Path
    """
    sets = {}
    for r in rows:
        try:
            v = float(r.get(metric))
        except (TypeError, ValueError):
            continue
        if not math.isfinite(v):
            continue
        s = sets.setdefault(str(r.get("set")), {"params": r.get("params"), "values": []})
        s["values"].append(v)
    fig, (ax,) = _figure(size=(max(6.4, 1.4 * len(sets)), 4.8))
    rng = np.random.RandomState(0)  # fixed jitter: same figure for the same rows
    for i, (name, s) in enumerate(sets.items()):
        v = np.array(s["values"])
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(v)), v, s=18, alpha=0.7,
                   color="tab:blue", label="folds" if i == 0 else None)
        ax.errorbar(i + 0.25, v.mean(), yerr=v.std(), fmt="s", color="tab:red", capsize=4,
                    label="mean ± std" if i == 0 else None)
    ax.set_xticks(range(len(sets)), [f"set {k}\n{_params_label(s['params'])}"
                                     for k, s in sets.items()], fontsize="x-small")
    ax.set(ylabel=metric, title=title or f"Cross-validation: {metric} per fold")
    ax.grid(alpha=0.3, axis="y")
    if sets:
        ax.legend(fontsize="small")
    return _save(fig, path)
