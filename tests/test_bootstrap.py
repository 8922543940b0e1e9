"""eval.bootstrap against its references: every resample scored the slow way (renamed copies
of the drawn images through eval.detection and eval.two_stage, scikit-learn's weighted AUC),
and the intervals against scipy.stats.bootstrap with the same seed and batch."""
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from eval import bootstrap, detection, two_stage
from tests.detection_fixtures import random_set

CLASSES = ["a", "b", "c"]
DET_THRESHOLD = 0.3
FILTER_THRESHOLD = 0.0


def _case(seed, n_img=30):
    """Ground truth, detections, the filter's survivors and crop rows of a random test set,
    with images grouped two or three to a screenshot/patient (continuous scores: no ties)."""
    gt, det = random_set(seed, n_img=n_img, n_cls=len(CLASSES), score_decimals=12, big=20)
    rng = np.random.RandomState(seed + 7)
    filter_scores = {i: rng.uniform(-1, 1, len(d["scores"])) for i, d in det.items()}
    for fs in filter_scores.values():
        fs[rng.rand(len(fs)) < 0.1] = np.nan  # detections the filter never scored
    kept = two_stage.gate(det, filter_scores, FILTER_THRESHOLD)
    crops = [{"image_id": i, "label": int(rng.choice([-1, 1])),
              "filter_score": float(np.round(s, 1))}  # rounded: tied crop scores
             for i, fs in filter_scores.items() for s in fs if np.isfinite(s)]
    ids = list(gt)
    group_of = {i: f"g{k // rng.randint(1, 4)}" for k, i in enumerate(ids)}
    return gt, det, kept, crops, group_of


def _test_set(case, **kw):
    gt, det, kept, crops, group_of = case
    return bootstrap.TestSet(gt, det, kept, DET_THRESHOLD, len(CLASSES), offset=1,
                             group_of=group_of, crops=crops, **kw)


def _copies(d, image_weights):
    """``d`` with image ``i`` repeated ``w`` times under new ids, copies next to each other."""
    return {f"{i}#{k}": d[i] for i, w in image_weights.items() if i in d
            for k in range(int(w))}


def _slow_metrics(case, image_weights):
    """The metrics of one resample, scored as a test set of renamed copies."""
    gt, det, kept, crops, _ = case
    g, d, s = _copies(gt, image_weights), _copies(det, image_weights), _copies(kept, image_weights)
    out, fp = {}, {}
    for stage, dd in (("detector", d), ("two_stage", s)):
        res = detection.evaluate(g, dd, CLASSES, offset=1)
        op = detection.operating_point(g, dd, DET_THRESHOLD, offset=1)
        fp[stage] = op["fp"]
        out.update({f"{stage}_map_voc12": res["map_voc12"], f"{stage}_map_voc07": res["map_voc07"],
                    **{f"{stage}_{k}": op[k] for k in ("precision", "recall", "f1",
                                                        "fp_per_image")}})
    out["precision_gain"] = out["two_stage_precision"] - out["detector_precision"]
    out["recall_ratio"] = (out["two_stage_recall"] / out["detector_recall"]
                           if out["detector_recall"] > 0 else np.nan)
    out["f1_gain"] = out["two_stage_f1"] - out["detector_f1"]
    out["map_voc12_gain"] = out["two_stage_map_voc12"] - out["detector_map_voc12"]
    out["fp_removed_share"] = 1.0 - fp["two_stage"] / fp["detector"] if fp["detector"] else np.nan
    rows = [r for r in crops for _ in range(int(image_weights[r["image_id"]]))]
    labels = [r["label"] for r in rows]
    out["filter_auc"] = (roc_auc_score(labels, [r["filter_score"] for r in rows])
                         if len(set(labels)) == 2 else np.nan)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_reweighted_resamples_score_as_renamed_copies(seed):
    case = _case(seed)
    ts = _test_set(case)
    ids = list(case[0])
    rng = np.random.RandomState(seed)
    draws = [rng.randint(0, ts.n_groups, ts.n_groups) for _ in range(12)]
    draws.append(np.arange(ts.n_groups))  # the sample itself
    got = ts.statistic(np.array(draws))
    for r, drawn in enumerate(draws):
        per_group = np.bincount(drawn, minlength=ts.n_groups)
        want = _slow_metrics(case, dict(zip(ids, per_group[ts.codes])))
        for m, name in enumerate(ts.names):
            np.testing.assert_allclose(got[m, r], want[name], rtol=0, atol=1e-12,
                                       err_msg=f"{name}, resample {r}")


def test_sample_values_are_the_reported_ones():
    """Every group once: the numbers two_stage.compare reports, and scikit-learn's AUC."""
    case = _case(11)
    gt, det, kept, crops, _ = case
    point = _test_set(case).point()
    for stage, d in (("detector", det), ("two_stage", kept)):
        op = detection.operating_point(gt, d, DET_THRESHOLD, offset=1)
        res = detection.evaluate(gt, d, CLASSES, offset=1)
        assert point[f"{stage}_precision"] == pytest.approx(op["precision"], abs=1e-15)
        assert point[f"{stage}_recall"] == pytest.approx(op["recall"], abs=1e-15)
        assert point[f"{stage}_f1"] == pytest.approx(op["f1"], abs=1e-15)
        assert point[f"{stage}_map_voc12"] == pytest.approx(res["map_voc12"], abs=1e-12)
        assert point[f"{stage}_map_voc07"] == pytest.approx(res["map_voc07"], abs=1e-12)
    assert point["filter_auc"] == pytest.approx(
        roc_auc_score([r["label"] for r in crops], [r["filter_score"] for r in crops]), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_weighted_auc_matches_sklearn_sample_weight(seed):
    rng = np.random.RandomState(seed)
    n = rng.randint(2, 60)
    labels = rng.choice([-1, 1], n)
    labels[:2] = [-1, 1]
    scores = np.round(rng.normal(size=n), rng.randint(0, 3))  # ties
    w = rng.randint(0, 4, (6, n)).astype(float)
    got = bootstrap.weighted_auc(w, labels, scores)
    for row, g in zip(w, got):
        if len(set(labels[row > 0])) < 2:
            assert np.isnan(g)
        else:
            assert g == pytest.approx(roc_auc_score(labels, scores, sample_weight=row), abs=1e-12)


def _scipy(ts, method, seed, n_resamples, batch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning: compared below
        return stats.bootstrap((np.arange(ts.n_groups),), ts.statistic, n_resamples=n_resamples,
                               confidence_level=0.9, method=method, vectorized=True,
                               batch=batch, random_state=np.random.default_rng(seed))


@pytest.mark.parametrize("method", ["BCa", "percentile"])
@pytest.mark.parametrize("seed", [0, 3])
def test_intervals_are_scipy_bootstrap(method, seed):
    ts = _test_set(_case(seed))
    ours = bootstrap.intervals(ts, n_resamples=300, level=0.9, seed=seed, method=method, batch=70)
    ref = _scipy(ts, method, seed, 300, 70)
    checked = 0
    for name, lo, hi in zip(ts.names, ref.confidence_interval.low, ref.confidence_interval.high):
        m = ours["metrics"][name]
        if np.isfinite(lo) and np.isfinite(hi):
            assert m["method"] == method, name
            assert m["low"] == pytest.approx(lo, abs=1e-12), name
            assert m["high"] == pytest.approx(hi, abs=1e-12), name
            checked += 1
        else:  # scipy's BCa undefined: ours says it fell back to the percentile interval
            assert method == "BCa" and m["method"] == "percentile", name
    assert checked >= len(ts.names) - 2


def test_a_degenerate_metric_falls_back_to_percentile():
    """A detector with no false positive at the threshold has precision 1 in every resample:
    BCa is undefined there (scipy gives nan), the percentile interval is [1, 1]."""
    gt, det = random_set(5, n_img=20, n_cls=1, score_decimals=12)
    clean = {}
    for i, d in det.items():
        flags = detection.match_detections({i: gt[i]}, {i: d}, offset=1)[i]
        keep = flags == 1
        clean[i] = {k: np.asarray(v)[keep] for k, v in d.items()}
    ts = bootstrap.TestSet(gt, clean, clean, 0.0, 1, offset=1)
    res = bootstrap.intervals(ts, n_resamples=200, seed=1)
    m = res["metrics"]["detector_precision"]
    assert (m["value"], m["low"], m["high"], m["method"]) == (1.0, 1.0, 1.0, "percentile")
    assert res["metrics"]["detector_recall"]["method"] == "BCa"


def test_groups_are_resampled_whole():
    """Halves of one screenshot move together: a set whose every image has an identical twin
    in its group gives the intervals of the set without twins, and narrower ones when the twins
    are wrongly taken as independent."""
    gt, det = random_set(2, n_img=25, n_cls=1, score_decimals=12)
    twin = {f"{i}{t}": v for i, v in gt.items() for t in "LR"}
    twin_det = {f"{i}{t}": v for i, v in det.items() for t in "LR"}
    single = bootstrap.TestSet(gt, det, det, DET_THRESHOLD, 1, offset=1)
    grouped = bootstrap.TestSet(twin, twin_det, twin_det, DET_THRESHOLD, 1, offset=1,
                                group_of={k: k[:-1] for k in twin})
    apart = bootstrap.TestSet(twin, twin_det, twin_det, DET_THRESHOLD, 1, offset=1)
    assert grouped.n_groups == single.n_groups == apart.n_groups // 2
    kw = dict(n_resamples=400, seed=4, method="percentile")
    a, b, c = (bootstrap.intervals(t, **kw)["metrics"] for t in (single, grouped, apart))
    for name in ("detector_map_voc12", "detector_precision", "detector_recall"):
        assert b[name]["low"] == pytest.approx(a[name]["low"], abs=1e-12)
        assert b[name]["high"] == pytest.approx(a[name]["high"], abs=1e-12)
    width = {k: sum(v[n]["high"] - v[n]["low"] for n in ("detector_precision", "detector_recall"))
             for k, v in (("grouped", b), ("apart", c))}
    assert width["apart"] < 0.85 * width["grouped"]


def test_same_seed_same_intervals_and_errors():
    ts = _test_set(_case(1))
    a = bootstrap.intervals(ts, n_resamples=100, seed=9)
    assert a == bootstrap.intervals(ts, n_resamples=100, seed=9)
    assert a != bootstrap.intervals(ts, n_resamples=100, seed=10)
    lines = bootstrap.format_lines(a, names={"precision_gain", "detector_map_voc12"})
    assert len(lines) == 3 and lines[1].startswith("detector_map_voc12: ")
    assert lines[2].startswith("precision_gain: ") and "[" in lines[2]
    with pytest.raises(ValueError, match="method"):
        bootstrap.intervals(ts, method="studentized")
    with pytest.raises(ValueError, match="level"):
        bootstrap.intervals(ts, level=95)
    gt, det, kept, crops, _ = _case(1)
    one = bootstrap.TestSet(gt, det, kept, DET_THRESHOLD, 3, offset=1,
                            group_of={i: "all" for i in gt})
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap.intervals(one)
    with pytest.raises(ValueError, match="outside the test split"):
        bootstrap.TestSet(gt, det, kept, DET_THRESHOLD, 3, offset=1,
                          crops=crops + [{"image_id": "elsewhere", "label": 1, "filter_score": 0}])
