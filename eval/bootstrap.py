"""How far the test split's numbers could move with other test images: a paired, grouped
bootstrap.

A test split is a sample. The CPU demo scores 60-70 halves from about 55 screenshots, and a
precision gain of +0.12 or a test mAP of 0.92 tells a reader little until they know how much
it moves when the test images change. This module resamples the test *groups* with
replacement (prepare_data.py's split groups: a screenshot, or a patient with ``--groups``;
the two halves of one screenshot are not independent draws) and re-scores every resample.
The detector alone and detector + filter are scored on the same resampled images, so the
interval of their difference (precision gain, recall ratio, F1 gain) is paired.

Exact reweighting instead of copies: greedy VOC matching is per image, so every detection's
TP/FP flag is computed once, and a resample only weighs each image by how often its group was
drawn. An image drawn twice adds its detections twice, next to each other in the ranking
(equal scores); that leaves the VOC precision envelope, and so AP, as it is with two renamed
copies (tests/test_bootstrap.py scores resamples both ways). The two could differ only where
other detections hold exactly the same score as a copied one, since the stable ranking then
orders the tied detections by position.

The intervals are ``scipy.stats.bootstrap``'s -- the same draws, BCa levels and percentiles
for the same seed and batch (tested against it) -- written in numpy and the standard library
because eval/ does without scipy (README "Import rules"). BCa by default; a metric whose BCa
interval is undefined (the same value in every resample, say) gets the percentile interval and
says so.
"""
import warnings
from statistics import NormalDist

import numpy as np

from eval.detection import _match_tables
from eval.detection_io import table_from_detections, table_from_ground_truth

_NORMAL = NormalDist()

#: Resamples of the test groups. At 2,000, on a seed-0 demo's test split (56 groups), five
#: resampling seeds moved most interval ends by 0.005 or less and all but two by 0.01 or less:
#: FP per image (a count, 0.03) and the lower end of the two-stage VOC07 mAP (0.08; the
#: 11-point AP is a step function, and BCa's corrected level lands in its sparse tail).
N_RESAMPLES = 2000
LEVEL = 0.95
#: Resamples per vectorised call: (batch x detections) float64 arrays stay small.
BATCH = 200
STAGES = ("detector", "two_stage")
#: Metrics per stage, then the paired ones (two-stage against detector alone).
#: ``fp_removed_share``: the share of the detector's false positives the filter removed
#: (nan without any). A precision gain cannot exceed 1 - the detector's precision, so behind a
#: precise detector it reads small however well the filter works; this share does not.
STAGE_METRICS = ("map_voc12", "map_voc07", "precision", "recall", "f1", "fp_per_image")
PAIRED_METRICS = ("precision_gain", "recall_ratio", "f1_gain", "map_voc12_gain",
                  "fp_removed_share")


def group_codes(image_ids, group_of=None):
    """Integer code of each image's group (first-seen order) and the number of groups.

    ``group_of`` maps an image id to its group label; ``None`` (or an id it lacks) makes
    the image a group of its own."""
    group_of = group_of or {}
    seen = {}
    codes = np.array([seen.setdefault(group_of.get(i, ("image", i)), len(seen))
                      for i in image_ids], dtype=np.int64)
    return codes, len(seen)


def group_weights(drawn, n_groups):
    """How often each group was drawn: ``drawn`` (..., m) group codes -> (rows, n_groups)
    counts, rows = the product of the leading dimensions."""
    drawn = np.asarray(drawn, dtype=np.int64)
    rows = int(np.prod(drawn.shape[:-1], dtype=np.int64))
    flat = drawn.reshape(rows, -1) + n_groups * np.arange(rows)[:, None]
    return np.bincount(flat.ravel(), minlength=rows * n_groups).reshape(rows, n_groups)


class DetectionSet:
    """One stage's detections on the test images, matched once, ready to reweight.

    Parameters
    ----------
    gt, det : dict
        As for :func:`eval.detection.evaluate`; images are taken in ``gt``'s order.
    n_classes : int
    score_threshold : float
        The operating point (``score >= score_threshold``) of precision, recall and F1.
    iou, offset
        Matching settings (:func:`eval.detection.match_detections`).
    """

    def __init__(self, gt, det, n_classes, score_threshold, iou=0.5, *, offset):
        gt_t = table_from_ground_truth(gt, n_classes)
        dr_t = table_from_detections(det, list(gt), n_classes)
        flags = _match_tables(gt_t, dr_t, iou, offset, "stable")[0]
        n_img = len(gt_t.ids)
        g_img = np.repeat(np.arange(n_img), gt_t.counts)
        d_img = np.repeat(np.arange(n_img), dr_t.counts)
        positive = ~gt_t.extra
        scores = dr_t.extra
        # per class: the evaluator's ranking (score descending, ties in table order) of the
        # detections not matched to a difficult box, and each image's positives
        self.classes = []
        for c in range(n_classes):
            sel = np.flatnonzero(dr_t.labels == c)
            ordered = sel[np.argsort(-scores[sel], kind="stable")]
            ordered = ordered[flags[ordered] >= 0]
            self.classes.append({
                "image": d_img[ordered], "tp": (flags[ordered] == 1).astype(np.float64),
                "n_pos": np.bincount(g_img[(gt_t.labels == c) & positive],
                                     minlength=n_img).astype(np.float64)})
        at = (scores >= score_threshold) & (flags >= 0)
        self.tp = np.bincount(d_img[at & (flags == 1)], minlength=n_img).astype(np.float64)
        self.fp = np.bincount(d_img[at & (flags == 0)], minlength=n_img).astype(np.float64)
        self.n_pos = np.bincount(g_img[positive], minlength=n_img).astype(np.float64)

    def metrics(self, weights):
        """Every stage metric for each row of image weights ``(rows, n_images)``:
        ``{name: (rows,)}`` with the names of :data:`STAGE_METRICS`."""
        w = np.asarray(weights, dtype=np.float64)
        tp, fp, n_pos = w @ self.tp, w @ self.fp, w @ self.n_pos
        fn = n_pos - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {"precision": np.where(tp + fp > 0, tp / (tp + fp), 0.0),
                   "recall": np.where(n_pos > 0, tp / n_pos, 0.0),
                   "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0),
                   "fp_per_image": fp / w.sum(axis=1)}
        aps = np.array([_weighted_ap(w, c) for c in self.classes])  # (classes, 2, rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample without positives
            out["map_voc12"] = np.nanmean(aps[:, 0], axis=0)
            out["map_voc07"] = np.nanmean(aps[:, 1], axis=0)
        return out


def _weighted_ap(w, cls):
    """VOC12 and VOC07 AP of one class under image weights ``w`` (rows, n_images): the
    expressions of :func:`eval.detection.average_precision`, on weighted cumulative counts."""
    dw = w[:, cls["image"]]
    ctp = np.cumsum(dw * cls["tp"], axis=1)
    cfp = np.cumsum(dw * (1.0 - cls["tp"]), axis=1)
    n_pos = w @ cls["n_pos"]
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(ctp + cfp > 0, ctp / (ctp + cfp), 0.0)
        rec = ctp / n_pos[:, None]
    rows = len(w)
    mrec = np.concatenate([np.zeros((rows, 1)), rec, np.ones((rows, 1))], axis=1)
    mpre = np.concatenate([np.zeros((rows, 1)), prec, np.zeros((rows, 1))], axis=1)
    mpre = np.maximum.accumulate(mpre[:, ::-1], axis=1)[:, ::-1]
    voc12 = np.sum((mrec[:, 1:] - mrec[:, :-1]) * mpre[:, 1:], axis=1)
    voc07 = np.zeros(rows)
    for t in np.arange(0.0, 1.1, 0.1):
        voc07 += np.max(np.where(rec >= t, prec, 0.0), axis=1, initial=0.0) / 11.0
    none = ~(n_pos > 0)
    voc12[none] = np.nan
    voc07[none] = np.nan
    return np.stack([voc12, voc07])


def weighted_auc(weights, labels, scores):
    """ROC AUC of crops under crop weights ``(rows, n)``: the weighted Mann-Whitney
    statistic (ties count one half), as ``sklearn.metrics.roc_auc_score(sample_weight=)``
    computes it; nan for a row without both classes."""
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(scores, kind="stable")
    s = np.asarray(scores, dtype=np.float64)[order]
    pos = (np.asarray(labels) == 1)[order]
    w = w[:, order]
    if not len(s):
        return np.full(len(w), np.nan)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos_w = np.add.reduceat(w * pos, starts, axis=1)
    neg_w = np.add.reduceat(w * ~pos, starts, axis=1)
    below = np.cumsum(neg_w, axis=1) - neg_w
    num = np.sum(pos_w * (below + 0.5 * neg_w), axis=1)
    den = pos_w.sum(axis=1) * neg_w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


class TestSet:
    """The two stages (and optionally the filter's crops) on one test split, as one
    vectorised statistic of resampled group codes (:meth:`statistic`, which
    :func:`scipy.stats.bootstrap` also accepts)."""

    def __init__(self, gt, det, kept, det_threshold, n_classes, *, offset, iou=0.5,
                 group_of=None, crops=None):
        ids = list(gt)
        self.codes, self.n_groups = group_codes(ids, group_of)
        self.stages = {"detector": DetectionSet(gt, det, n_classes, det_threshold, iou,
                                                offset=offset),
                       "two_stage": DetectionSet(gt, kept, n_classes, det_threshold, iou,
                                                 offset=offset)}
        self.names = ([f"{s}_{m}" for s in STAGES for m in STAGE_METRICS]
                      + list(PAIRED_METRICS))
        self.crops = None
        if crops:
            index = {i: k for k, i in enumerate(ids)}
            missing = sorted({r["image_id"] for r in crops} - set(index))
            if missing:
                raise ValueError(f"filter crops of {len(missing)} image(s) outside the test "
                                 f"split, e.g. {missing[:3]}")
            self.crops = {"image": np.array([index[r["image_id"]] for r in crops]),
                          "label": np.array([int(r["label"]) for r in crops]),
                          "score": np.array([float(r["filter_score"]) for r in crops])}
            self.names.append("filter_auc")

    def values(self, group_w):
        """All metrics for each row of group weights ``(rows, n_groups)``: (metrics, rows)
        in :attr:`names` order."""
        w = np.asarray(group_w)[:, self.codes]  # each image weighs what its group does
        per = {s: d.metrics(w) for s, d in self.stages.items()}
        out = {f"{s}_{m}": per[s][m] for s in STAGES for m in STAGE_METRICS}
        det, two = per["detector"], per["two_stage"]
        out["precision_gain"] = two["precision"] - det["precision"]
        with np.errstate(divide="ignore", invalid="ignore"):
            out["recall_ratio"] = np.where(det["recall"] > 0, two["recall"] / det["recall"],
                                           np.nan)
        out["f1_gain"] = two["f1"] - det["f1"]
        out["map_voc12_gain"] = two["map_voc12"] - det["map_voc12"]
        with np.errstate(divide="ignore", invalid="ignore"):  # per image over the same images
            out["fp_removed_share"] = np.where(det["fp_per_image"] > 0, 1.0 - two[
                "fp_per_image"] / det["fp_per_image"], np.nan)
        if self.crops is not None:
            out["filter_auc"] = weighted_auc(w[:, self.crops["image"]], self.crops["label"],
                                             self.crops["score"])
        return np.stack([out[n] for n in self.names])

    def statistic(self, drawn, axis=-1):
        """scipy's vectorised statistic: ``drawn`` holds resampled group codes along
        ``axis``; returns (metrics,) + the other dimensions."""
        drawn = np.moveaxis(np.asarray(drawn), axis, -1)
        lead = drawn.shape[:-1]
        vals = self.values(group_weights(drawn, self.n_groups))
        return vals.reshape((len(self.names),) + lead)

    def point(self):
        """The metrics of the test split itself (every group once)."""
        return dict(zip(self.names, self.statistic(np.arange(self.n_groups))))


def _draws(rng, n_groups, n_resamples, batch):
    """Resampled group codes, ``batch`` resamples at a time: ``rng.integers(0, n, (b, n))``,
    the draws of ``scipy.stats.bootstrap`` with the same generator and batch."""
    for k in range(0, n_resamples, batch):
        yield rng.integers(0, n_groups, (min(batch, n_resamples - k), n_groups))


def _jackknife(n_groups):
    """Leave-one-group-out samples: row ``i`` holds every code but ``i``."""
    keep = ~np.eye(n_groups, dtype=bool)
    return np.broadcast_to(np.arange(n_groups), (n_groups, n_groups))[keep].reshape(
        n_groups, n_groups - 1)


def _ndtri(p):
    """Inverse standard normal CDF, elementwise, +-inf at 1 and 0 (scipy.special.ndtri)."""
    return np.array([_NORMAL.inv_cdf(v) if 0 < v < 1 else
                     -np.inf if v == 0 else np.inf if v == 1 else np.nan
                     for v in np.ravel(p)]).reshape(np.shape(p))


def _ndtr(z):
    """Standard normal CDF, elementwise (scipy.special.ndtr); nan stays nan."""
    return np.array([_NORMAL.cdf(v) if np.isfinite(v) else
                     0.0 if v == -np.inf else 1.0 if v == np.inf else np.nan
                     for v in np.ravel(z)]).reshape(np.shape(z))


def bca_levels(dist, point, jack, alpha):
    """Bias-corrected and accelerated percentile levels (Efron and Tibshirani 14.3 and 15.4,
    as scipy.stats.bootstrap computes them), one pair per metric.

    Parameters
    ----------
    dist : (metrics, B) array
        The bootstrap distribution.
    point : (metrics,) array
        The statistic of the sample itself.
    jack : (metrics, n) array
        The leave-one-group-out values.
    alpha : float
        ``(1 - level) / 2``.

    Returns
    -------
    (low, high) : two (metrics,) arrays of levels in [0, 1], nan where undefined
    """
    B = dist.shape[1]
    below = ((dist < point[:, None]).sum(axis=1) + (dist <= point[:, None]).sum(axis=1)) / (2 * B)
    z0 = _ndtri(below)
    n = jack.shape[1]
    u = (n - 1) * (jack.mean(axis=1, keepdims=True) - jack)
    z = _NORMAL.inv_cdf(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (1 / 6) * ((u ** 3).sum(axis=1) / n ** 3) / ((u ** 2).sum(axis=1) / n ** 2) ** 1.5
        low = _ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))
        high = _ndtr(z0 + (z0 - z) / (1 - a * (z0 - z)))
    return low, high


def _percentile(values, q):
    """np.percentile; nan when ``q`` is nan or a resample's metric was undefined."""
    if not np.isfinite(q) or not np.all(np.isfinite(values)):
        return np.nan
    return float(np.percentile(values, q))


def intervals(test_set, n_resamples=N_RESAMPLES, level=LEVEL, seed=0, method="BCa",
              batch=BATCH):
    """Bootstrap confidence intervals of every metric of a :class:`TestSet`.

    Parameters
    ----------
    test_set : TestSet
    n_resamples : int
        Resamples of the test groups.
    level : float
        Confidence level of the two-sided interval.
    seed : int
        The resampling's seed: the same seed gives the same intervals.
    method : {"BCa", "percentile"}
    batch : int
        Resamples per vectorised call (as scipy's ``batch``, it orders the draws).

    Returns
    -------
    dict
        ``{"method", "level", "n_resamples", "seed", "n_groups", "n_images", "metrics":
        {name: {"value", "low", "high", "method"}}}``, plain floats (nan as None).

    Raises
    ------
    ValueError
        Fewer than two groups, or a bad ``method`` or ``level``.
    """
    if method not in ("BCa", "percentile"):
        raise ValueError(f"method must be 'BCa' or 'percentile', got {method!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if test_set.n_groups < 2:
        raise ValueError(f"{test_set.n_groups} test group(s): a bootstrap needs at least 2")
    rng = np.random.default_rng(seed)
    dist = np.concatenate([test_set.statistic(d) for d in
                           _draws(rng, test_set.n_groups, n_resamples, batch)], axis=1)
    point = test_set.statistic(np.arange(test_set.n_groups))
    alpha = (1 - level) / 2
    low_q = np.full(len(point), alpha)
    high_q = np.full(len(point), 1 - alpha)
    used = ["percentile"] * len(point)
    if method == "BCa":
        jack_codes = _jackknife(test_set.n_groups)
        jack = np.concatenate([test_set.statistic(jack_codes[k:k + batch])
                               for k in range(0, test_set.n_groups, batch)], axis=1)
        bca_low, bca_high = bca_levels(dist, point, jack, alpha)
        ok = np.isfinite(bca_low) & np.isfinite(bca_high)
        low_q, high_q = np.where(ok, bca_low, low_q), np.where(ok, bca_high, high_q)
        used = ["BCa" if k else "percentile" for k in ok]
    low = [_percentile(d, 100 * q) for d, q in zip(dist, low_q)]
    high = [_percentile(d, 100 * q) for d, q in zip(dist, high_q)]

    def plain(v):
        return float(v) if np.isfinite(v) else None

    return {"method": method, "level": float(level), "n_resamples": int(n_resamples),
            "seed": int(seed), "n_groups": int(test_set.n_groups),
            "n_images": int(len(test_set.codes)),
            "metrics": {n: {"value": plain(p), "low": plain(lo), "high": plain(hi), "method": m}
                        for n, p, lo, hi, m in zip(test_set.names, point, low, high, used)}}


def format_lines(result, names=None):
    """``name: value [low, high]`` lines of an :func:`intervals` result (``names``: only
    those metrics)."""
    out = [f"{100 * result['level']:.0f} % intervals: {result['method']} bootstrap of "
           f"{result['n_groups']} test groups ({result['n_images']} images), "
           f"{result['n_resamples']} resamples, seed {result['seed']}"]
    for name, m in result["metrics"].items():
        if names is not None and name not in names:
            continue
        signed = name.endswith("_gain")

        def num(v):
            return "–" if v is None else f"{v:+.3f}" if signed else f"{v:.3f}"
        ci = f"[{num(m['low'])}, {num(m['high'])}]"
        note = f" ({m['method']})" if m["method"] != result["method"] else ""
        out.append(f"{name}: {num(m['value'])} {ci}{note}")
    return out
