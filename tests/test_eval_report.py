"""eval.report: the report shows what summary.json holds, skips what it lacks, never crashes."""
import copy
import json
import math

import numpy as np
import pytest

from eval import report


def full_summary(seed=0):
    rng = np.random.RandomState(seed)
    cv = [{"set": s, "fold": k, "params": {"lr": lr, "mixup": False},
           "map_voc07": float(rng.uniform(0.3, 0.8)), "map_voc12": float(rng.uniform(0.3, 0.8))}
          for s, lr in enumerate([1e-3, 1e-4]) for k in range(3)]
    cv_summary = []
    for s in range(2):
        v12 = [r["map_voc12"] for r in cv if r["set"] == s]
        v07 = [r["map_voc07"] for r in cv if r["set"] == s]
        cv_summary.append({"set": s, "params": cv[3 * s]["params"],
                           "map_voc12_mean": float(np.mean(v12)), "map_voc12_std": float(np.std(v12)),
                           "map_voc07_mean": float(np.mean(v07)), "map_voc07_std": float(np.std(v07))})
    u = lambda: float(rng.uniform(0.2, 0.95))
    return {
        "detector": {"cv_map_mean": u(), "cv_map_std": 0.05, "test_map_voc12": u(),
                     "test_map_voc07": u(), "precision": u(), "recall": u(), "f1": u(),
                     "fp_per_image": 1.25, "score_threshold": 0.31, "best_set": 1},
        "two_stage": {"test_map_voc12": u(), "test_map_voc07": u(), "precision": u(),
                      "recall": u(), "f1": u(), "fp_per_image": 0.5},
        "filter": {"test_auc": u(), "test_f1": u(), "threshold": -0.12, "n_train_pos": 40,
                   "n_train_neg": 160, "n_test_pos": 11, "n_test_neg": 37},
        "cv": cv, "cv_summary": cv_summary, "elapsed_s": 754.2,
        "plots": {"cv_map": "plots/cv.png", "pr_test": "plots/pr.png"},
        "seed": 3,
        "intervals": {"method": "BCa", "level": 0.95, "n_resamples": 2000, "seed": 3,
                      "n_groups": 31, "n_images": 40, "metrics": {
                          "detector_map_voc12": {"value": 0.812, "low": 0.7431, "high": 0.8679,
                                                 "method": "BCa"},
                          "precision_gain": {"value": 0.1234, "low": 0.0561, "high": 0.2049,
                                             "method": "BCa"},
                          "recall_ratio": {"value": 0.95, "low": 0.9, "high": 1.0,
                                           "method": "percentile"},
                          "filter_auc": {"value": 0.91, "low": None, "high": None,
                                         "method": "BCa"}}},
    }


def test_report_shows_every_known_value(tmp_path):
    s = full_summary()
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "cv.png").write_bytes(b"png")  # pr.png is missing on purpose
    (tmp_path / "summary.json").write_text(json.dumps(s))
    path = report.write_report(tmp_path)
    md = path.read_text()
    assert path.name == "report.md"
    for stage in ("detector", "two_stage"):
        for key in ("test_map_voc12", "test_map_voc07"):
            assert f"{100 * s[stage][key]:.2f}%" in md, (stage, key)
        for key in ("precision", "recall", "f1"):
            assert f"{s[stage][key]:.3f}" in md, (stage, key)
    for key in ("test_auc", "test_f1"):
        assert f"{s['filter'][key]:.3f}" in md
    for r in s["cv"]:
        assert f"{100 * r['map_voc12']:.2f}%" in md and f"{100 * r['map_voc07']:.2f}%" in md
    for r in s["cv_summary"]:
        assert f"{100 * r['map_voc12_mean']:.2f}% ± {100 * r['map_voc12_std']:.2f}%" in md
    assert "1 (chosen)" in md and "lr=0.001, mixup=False" in md
    assert "![cv map](plots/cv.png)" in md
    assert "*(missing: plots/pr.png)*" in md and "![pr test]" not in md
    assert "12 min 34 s" in md
    assert "| seed | 3 |" in md  # unknown keys are not lost
    assert "1.25" in md and "-0.12" in md
    # the bootstrap intervals: signed gains, plain values, a dash where undefined, the fallback
    assert "How far the test numbers could move (95 % intervals)" in md
    assert "| precision gain (paired) | +0.123 | +0.056 | +0.205 |" in md
    assert "| detector only: mAP VOC12 | 0.812 | 0.743 | 0.868 |" in md
    assert "| filter: test ROC AUC | 0.910 | – | – |" in md
    assert "31 groups" in md and "Percentile interval where BCa is undefined: recall_ratio." in md
    assert "intervals.metrics" not in md  # not repeated under "Other values"
    cv = s["detector"]["cv_map_mean"]
    where = "inside" if 0.7431 <= cv <= 0.8679 else "below" if cv < 0.7431 else "above"
    assert (f"The cross-validation mean mAP VOC12, {100 * cv:.2f}%, lies {where} the test mAP's "
            f"interval (74.31% – 86.79%).") in md
    for cv, where in ((0.70, "below"), (0.80, "inside"), (0.90, "above")):
        s["detector"]["cv_map_mean"] = cv
        assert f"{100 * cv:.2f}%, lies {where} the test" in report.render_report(s)


def test_summary_table_rows():
    s = full_summary(1)
    lines = report.format_summary_table(s).splitlines()
    det = next(l for l in lines if l.startswith("detector only"))
    two = next(l for l in lines if l.startswith("detector + filter"))
    assert f"{100 * s['detector']['test_map_voc12']:.2f}%" in det
    assert f"{s['two_stage']['f1']:.3f}" in two and "0.5" in two
    assert "FP / image" in lines[0]
    assert lines[-1] == ("(95 % intervals over test groups: precision gain +0.123 [+0.056, "
                         "+0.205]; recall ratio 0.950 [0.900, 1.000]; filter: test ROC AUC "
                         "0.910 [–, –])")
    empty = report.format_summary_table({})
    assert "detector only" in empty and "%" not in empty  # all dashes, no crash


def _damage(obj, rng, depth=0):
    """Randomly drop keys and replace values with None, NaN, strings or wrong types."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            r = rng.rand()
            if r < 0.2:
                continue
            out[k] = [None, float("nan"), "oops", [], {}, 7][rng.randint(6)] if r < 0.35 \
                else _damage(v, rng, depth + 1)
        return out
    if isinstance(obj, list):
        return [_damage(v, rng, depth + 1) for v in obj if rng.rand() > 0.2] + \
            ([None, "x", 3][rng.randint(3):] if rng.rand() < 0.3 else [])
    return obj


@pytest.mark.parametrize("seed", range(12))
def test_damaged_summaries_never_crash(tmp_path, seed):
    rng = np.random.RandomState(seed)
    s = _damage(copy.deepcopy(full_summary(seed)), rng)
    md = report.render_report(s, tmp_path)
    assert md.startswith("# "), f"seed={seed}"
    cells = [c.strip() for line in md.splitlines() if line.startswith("|")
             for c in line.split("|")]
    # numbers that are missing or unusable show as a dash, never as None/nan/inf
    assert not {"None", "nan", "nan%", "inf", "inf%"} & set(cells), f"seed={seed}"
    table = report.format_summary_table(s)
    assert "detector only" in table, f"seed={seed}"


@pytest.mark.parametrize("summary", [{}, None, [], {"detector": None, "plots": None, "cv": "x"},
                                     {"elapsed_s": math.inf}])
def test_degenerate_summaries(summary):
    md = report.render_report(summary)
    assert md.startswith("# Run report")
    assert "## Cross-validation" not in md and "## Plots" not in md
