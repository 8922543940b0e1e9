"""eval.classification against scikit-learn (to 1e-9) on random tanh-range scores with ties,
labels as ±1 and as 0/1; one-class inputs give clear errors, never NaN."""
import numpy as np
import pytest
from sklearn import metrics as skm

from eval import classification as C

SEEDS = [0, 1, 2, 3, 4, 5]
TOL = 1e-9


def scored_set(seed, n=300, pm=True, decimals=None):
    rng = np.random.RandomState(seed)
    y01 = (rng.rand(n) < rng.uniform(0.1, 0.6)).astype(int)
    s = np.tanh(rng.normal(0, 1, n) + 1.2 * y01)  # the filter's output range [-1, 1]
    if decimals is not None:
        s = np.round(s, decimals)  # many equal scores
    return (2 * y01 - 1 if pm else y01), y01, s


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("pm", [True, False])
def test_threshold_metrics_equal_sklearn(seed, pm):
    y, y01, s = scored_set(seed, pm=pm, decimals=2)
    rng = np.random.RandomState(seed)
    for t in (0.0, float(rng.uniform(-1, 1)), float(np.median(s))):
        pred = C.predict(s, t)
        m = C.metrics_at(y, s, t)
        ref = (s >= t).astype(int)
        np.testing.assert_array_equal(C.confusion_matrix(y, pred),
                                      skm.confusion_matrix(y01, ref, labels=[0, 1]),
                                      err_msg=f"seed={seed} t={t}")
        for key, fn in (("accuracy", skm.accuracy_score), ("precision", skm.precision_score),
                        ("recall", skm.recall_score), ("f1", skm.f1_score)):
            kw = {} if key == "accuracy" else {"zero_division": 0}
            assert abs(m[key] - fn(y01, ref, **kw)) < TOL, f"seed={seed} t={t} {key}"
        for key, beta in (("f2", 2), ("f0_5", 0.5)):
            want = skm.fbeta_score(y01, ref, beta=beta, zero_division=0)
            assert abs(m[key] - want) < TOL, f"seed={seed} t={t} {key}"
            assert abs(C.fbeta_score(y, pred, beta) - want) < TOL
        assert m["specificity"] == pytest.approx(skm.recall_score(1 - y01, 1 - ref,
                                                                  zero_division=0), abs=TOL)
        assert C.accuracy(y, pred) == m["accuracy"] and C.f1_score(y, pred) == m["f1"]
        assert C.precision(y, pred) == m["precision"] and C.recall(y, pred) == m["recall"]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1])
def test_curves_equal_sklearn(seed, decimals):
    y, y01, s = scored_set(seed, decimals=decimals)
    p, r, t = C.pr_curve(y, s)
    rp, rr, rt = skm.precision_recall_curve(y01, s)
    for got, want, name in ((p, rp, "precision"), (r, rr, "recall"), (t, rt, "thresholds")):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=f"seed={seed} {name}")
    assert abs(C.average_precision(y, s) - skm.average_precision_score(y01, s)) < TOL, seed
    for drop in (True, False):
        f, tp_, th = C.roc_curve(y, s, drop_intermediate=drop)
        rf, rt_, rth = skm.roc_curve(y01, s, drop_intermediate=drop)
        assert len(f) == len(rf), f"seed={seed} drop={drop}"
        np.testing.assert_allclose(f, rf, rtol=0, atol=TOL)
        np.testing.assert_allclose(tp_, rt_, rtol=0, atol=TOL)
        np.testing.assert_array_equal(th, rth)
    assert abs(C.roc_auc(y, s) - skm.roc_auc_score(y01, s)) < TOL, f"seed={seed}"


@pytest.mark.parametrize("seed", SEEDS)
def test_threshold_sweep_and_best_thresholds(seed):
    y, y01, s = scored_set(seed, decimals=2)
    sw = C.threshold_sweep(y, s)
    # every sweep row equals sklearn at that threshold
    for k in range(0, len(sw["thresholds"]), 7):
        ref = (s >= sw["thresholds"][k]).astype(int)
        assert abs(sw["f1"][k] - skm.f1_score(y01, ref, zero_division=0)) < TOL, seed
        assert abs(sw["precision"][k] - skm.precision_score(y01, ref, zero_division=0)) < TOL
    # best F1 by brute force over every distinct score
    cands = np.unique(s)
    f1s = [skm.f1_score(y01, (s >= t).astype(int), zero_division=0) for t in cands]
    best = C.best_f1_threshold(y, s)
    assert abs(best["f1"] - max(f1s)) < TOL, f"seed={seed}"
    assert best["threshold"] == cands[np.flatnonzero(np.isclose(f1s, max(f1s), atol=TOL))[-1]]
    # Youden from sklearn's full ROC
    fpr, tpr, thr = skm.roc_curve(y01, s, drop_intermediate=False)
    j = tpr - fpr
    yd = C.youden_threshold(y, s)
    assert abs(yd["youden"] - j.max()) < TOL, f"seed={seed}"
    assert yd["threshold"] == thr[np.flatnonzero(np.isclose(j, j.max(), atol=TOL))[0]]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("min_recall", [0.5, 0.9, 0.95, 1.0])
def test_recall_threshold_is_sklearns_highest_threshold_reaching_the_recall(seed, min_recall):
    y, y01, s = scored_set(seed, decimals=2)
    _, rec, thr = skm.precision_recall_curve(y01, s)
    want = thr[rec[:-1] >= min_recall].max()  # rec[i] is the recall at score >= thr[i]
    got = C.recall_threshold(y, s, min_recall)
    assert got["threshold"] == want, f"seed={seed}"
    assert got["recall"] >= min_recall
    with pytest.raises(ValueError, match="min_recall"):
        C.recall_threshold(y, s, 0)


def test_one_class_inputs_raise_clear_errors():
    s = np.array([0.1, -0.3, 0.7])
    with pytest.raises(ValueError, match="needs negative samples; got 3 positive and 0"):
        C.roc_auc([1, 1, 1], s)
    with pytest.raises(ValueError, match="needs positive samples; got 0 positive and 3"):
        C.roc_auc([-1, -1, -1], s)
    with pytest.raises(ValueError, match="needs positive"):
        C.pr_curve([0, 0, 0], s)
    with pytest.raises(ValueError, match="needs positive"):
        C.best_f1_threshold([-1, -1, -1], s)
    with pytest.raises(ValueError, match="negative"):
        C.youden_threshold([1, 1, 1], s)
    assert C.average_precision([1, 1, 1], s) == 1.0  # defined with positives only
    summ = C.summarize([-1, -1, -1], s)
    assert summ["auc"] is None and "positive" in summ["note"]
    assert summ["precision"] == 0.0 and summ["recall"] == 0.0  # zero division -> 0, not nan
    assert not any(isinstance(v, float) and np.isnan(v) for v in summ.values())


def test_bad_labels_and_scores():
    with pytest.raises(ValueError, match=r"\{-1, \+1\} or \{0, 1\}"):
        C.as_binary_labels([0, 1, 2])
    with pytest.raises(ValueError, match=r"\{-1, \+1\}"):
        C.as_binary_labels([-1, 0, 1])
    with pytest.raises(ValueError, match="want 3 values"):
        C.roc_auc([1, -1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="non-finite"):
        C.roc_auc([1, -1], [0.1, np.nan])
    np.testing.assert_array_equal(C.as_binary_labels([True, False]), [True, False])
