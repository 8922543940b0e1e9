"""Cross-validation bookkeeping: results table, per-set summary, out-of-fold merge, and a
random-box baseline to read mAPs against.

numpy and the standard library only (eval/ is shared with other frameworks' ports).
"""
import csv
import io
import math

import numpy as np

from infra.atomic import atomic_write_text

METRICS = ("map_voc12", "map_voc07")


def write_csv(path, rows, fields=None):
    """Write dict rows as CSV atomically; columns = ``fields`` or the union in first-seen order."""
    if fields is None:
        fields = []
        for r in rows:
            fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="raise")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())
    return path


def _fmt(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def _mean_std(values):
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan
    # Sample standard deviation (ddof=1): the folds are a sample of possible splits.
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarize(results, metric="map_voc12"):
    """Mean and standard deviation over folds, per hyper-parameter set.

    Parameters
    ----------
    results : list of dict
        One row per (set, fold) with ``set`` (int), ``params`` (str label), ``best_epoch``
        and the ``METRICS``.
    metric : str
        The column the sets are ranked by (higher is better).

    Returns
    -------
    list of dict
        One row per set, in set order: ``set, params, folds, <metric>_mean, <metric>_std``
        for each metric, ``best_epoch_median``, ``rank`` (1 = best by ``metric`` mean; ties
        go to the earlier set).
    """
    by_set = {}
    for r in results:
        by_set.setdefault(int(r["set"]), []).append(r)
    rows = []
    for s in sorted(by_set):
        rs = by_set[s]
        row = {"set": s, "params": rs[0]["params"], "folds": len(rs)}
        for m in METRICS:
            row[f"{m}_mean"], row[f"{m}_std"] = _mean_std([float(r[m]) for r in rs])
        row["best_epoch_median"] = float(np.median([int(r["best_epoch"]) for r in rs]))
        rows.append(row)
    key = f"{metric}_mean"
    order = sorted(range(len(rows)),
                   key=lambda i: (-(rows[i][key] if not math.isnan(rows[i][key]) else -np.inf), i))
    for rank, i in enumerate(order, start=1):
        rows[i]["rank"] = rank
    return rows


def best_set(summary):
    """The ``set`` index ranked first by :func:`summarize`."""
    return next(r["set"] for r in summary if r["rank"] == 1)


def merge_out_of_fold(fold_detections, train_ids):
    """Join each fold model's predictions on its own validation ids.

    Parameters
    ----------
    fold_detections : list of dict
        Per fold, ``id -> {"boxes", "scores", "labels"}`` for that fold's validation ids.
    train_ids : list of str
        Every training id (``splits["train"]``).

    Returns
    -------
    dict
        ``id -> detections`` in ``train_ids`` order.

    Raises
    ------
    ValueError
        An id predicted by two folds, a training id predicted by none, or a prediction for
        an id outside the training set.
    """
    merged, seen = {}, {}
    for k, dets in enumerate(fold_detections):
        for sid, d in dets.items():
            if sid in seen:
                raise ValueError(f"out-of-fold: id {sid!r} predicted by folds {seen[sid]} and "
                                 f"{k}; fold validation sets must be disjoint")
            seen[sid] = k
            merged[sid] = d
    train = set(train_ids)
    extra = [s for s in merged if s not in train]
    missing = [s for s in train_ids if s not in merged]
    if extra or missing:
        raise ValueError(f"out-of-fold predictions must cover the training ids exactly once: "
                         f"{len(missing)} missing (e.g. {missing[:3]}), {len(extra)} not "
                         f"training ids (e.g. {extra[:3]})")
    return {s: merged[s] for s in train_ids}


def random_detections(image_sizes, box_sizes, per_image=10, seed=0, n_classes=1):
    """Boxes of realistic sizes at uniformly random places with random scores.

    A chance-level reference for detection mAP: a detector that learned nothing about
    *where* lesions are but knows how big they are.

    Parameters
    ----------
    image_sizes : dict
        ``id -> (width, height)`` in pixels.
    box_sizes : array-like
        ``(M, 2)`` widths and heights to draw from (e.g. the training boxes).
    per_image : int
        Boxes per image.
    seed : int
    n_classes : int

    Returns
    -------
    dict
        ``id -> {"boxes", "scores", "labels"}``, boxes inside their image.
    """
    rng = np.random.RandomState(seed)
    wh_pool = np.asarray(box_sizes, dtype=np.float64).reshape(-1, 2)
    if len(wh_pool) == 0:
        raise ValueError("random_detections needs at least one box size")
    out = {}
    for sid, (w, h) in image_sizes.items():
        wh = wh_pool[rng.randint(len(wh_pool), size=per_image)]
        bw, bh = np.minimum(wh[:, 0], w), np.minimum(wh[:, 1], h)
        x1 = rng.uniform(0, 1, per_image) * (w - bw)
        y1 = rng.uniform(0, 1, per_image) * (h - bh)
        out[sid] = {"boxes": np.stack([x1, y1, x1 + bw, y1 + bh], axis=1),
                    "scores": rng.uniform(0, 1, per_image),
                    "labels": rng.randint(n_classes, size=per_image)}
    return out
