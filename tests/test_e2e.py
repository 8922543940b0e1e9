"""The whole chain at tiny settings: demo.py (phantom -> prepare -> detector CV -> filter ->
two-stage evaluation -> report), then predict.py with the saved models on new screenshots.

Proves that the stages fit together and every artefact is written; the accuracy of the
real settings is measured by the demo itself (README, issue notes), not here.
"""
import json
import time

import pytest

import demo
import predict
from datasets.phantom import generator as phantom
from eval import acceptance

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    # started 7 s ago, as the command line passes the process's start (imports included)
    summary = demo.main(demo.parse_args(["--tiny", "--out", str(out), "--name", "e2e",
                                         "--no-progress", "--seed", "3"]),
                        started_at=time.time() - 7.0)
    return out / "e2e", summary


def test_demo_writes_summary_report_and_stage_folders(demo_run, capsys):
    run_dir, summary = demo_run
    for key in ("cv_map_mean", "cv_map_std", "test_map_voc12", "test_map_voc07", "precision",
                "recall"):
        assert key in summary["detector"], key
    for key in ("test_map_voc12", "test_map_voc07", "precision", "recall"):
        assert key in summary["two_stage"], key
    assert {"test_auc", "test_f1"} <= set(summary["filter"])
    assert summary["budget"]["startup_s"] >= 7.0
    # which phantom bytes the run trained on, as its raw/truth.json says
    truth = json.loads((run_dir / "raw" / "truth.json").read_text())
    assert summary["data"]["phantom_version"] == truth["phantom_version"] \
        == phantom.PHANTOM_VERSION
    assert summary["elapsed_s"] >= summary["budget"]["startup_s"] + 0.1
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(
        json.dumps(summary, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    report = (run_dir / "report.md").read_text()
    assert "detector only" in report and "detector + filter" in report
    # recall by lesion contrast and size: every non-difficult test box in one bin of each
    n_test_boxes = summary["detector"]["tp"] + summary["detector"]["fn"]
    for attr in ("contrast", "size"):
        for stage in ("detector", "two_stage"):
            assert sum(r["n"] for r in summary["recall_by"][attr][stage]) == n_test_boxes
    assert "by lesion" in report
    # the operating point is model.json's, as predict.py uses it
    model = json.loads((run_dir / "detector" / "model.json").read_text())
    assert summary["detector"]["score_threshold"] == model["score_threshold"]
    # the sweep's row at the operating point is the summary's, with the filter's own threshold
    at_op = [r for r in summary["two_stage_sweep"]
             if r["det_threshold"] == model["score_threshold"]]
    assert len(at_op) == 1
    assert at_op[0]["filter_threshold"] == pytest.approx(summary["filter"]["threshold"])
    for stage in ("detector", "two_stage"):
        for k in ("precision", "recall"):
            assert at_op[0][f"{stage}_{k}"] == pytest.approx(summary[stage][k]), (stage, k)
    assert "by detector threshold" in report
    # the single-stage reference: the detector alone at its own best-F1 threshold (out of fold)
    det_summary = json.loads((run_dir / "detector" / "summary.json").read_text())
    ref = summary["detector_best_f1"]
    assert ref["score_threshold"] == det_summary["oof_f1_threshold"]
    assert model["score_threshold"] == det_summary["oof_threshold"]
    assert det_summary["oof_f1_threshold"] >= det_summary["oof_threshold"]  # F2 favours recall
    assert ref["recall"] <= summary["detector"]["recall"]
    assert "best-F1 threshold (reference)" in report
    # bootstrap intervals over the test groups, centred on the numbers reported above
    ci = summary["intervals"]
    assert ci["n_images"] == summary["data"]["test"] and ci["n_groups"] >= 2
    m = ci["metrics"]
    for stage in ("detector", "two_stage"):
        for k in ("precision", "recall", "f1"):
            assert m[f"{stage}_{k}"]["value"] == pytest.approx(summary[stage][k], abs=1e-12)
        assert m[f"{stage}_map_voc12"]["value"] == pytest.approx(
            summary[stage]["test_map_voc12"], abs=1e-12)
    assert m["precision_gain"]["value"] == pytest.approx(
        summary["two_stage"]["precision"] - summary["detector"]["precision"], abs=1e-12)
    if summary["filter"]["test_auc"] is not None and m["filter_auc"]["value"] is not None:
        # test_scores.csv holds the scores to 6 digits
        assert m["filter_auc"]["value"] == pytest.approx(summary["filter"]["test_auc"], abs=1e-4)
    assert "How far the test numbers could move" in report
    # the README's lines judged on this run, as eval.acceptance judges its folder again
    assert summary["acceptance"] == acceptance.read_run(run_dir)
    assert len(summary["acceptance"]["lines"]) == 7
    assert "## The lines the CPU demo is held to (README)" in report
    for rel in ("raw/truth.json", "data/splits.json", "data/records/all.rec",
                "detector/cv_results.csv", "detector/cv_summary.csv", "detector/model.json",
                "detector/oof_detections.json", "detector/test_detections.json",
                "filter/filter.json", "filter/test_scores.csv", "plots/pr_two_stage.png",
                "plots/operating_sweep.png"):
        assert (run_dir / rel).exists(), rel
    # every training id has exactly one out-of-fold entry
    splits = json.loads((run_dir / "data/splits.json").read_text())
    oof = json.loads((run_dir / "detector/oof_detections.json").read_text())
    assert sorted(oof["images"]) == sorted(splits["train"])


def _log_lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def _logger(line):
    # "HH:MM:SS LEVEL name: message" (infra.runs)
    return line.split(" ", 3)[2].rstrip(":")


def test_each_stage_log_holds_its_own_lines_and_the_demo_log_all(demo_run):
    run_dir, _ = demo_run
    demo = _log_lines(run_dir / "log.txt")
    stages = {"data": "prepare_data", "detector": "train_yolo3", "filter": "train_filter"}
    others = {"prepare_data", "train_yolo3", "train_filter", "demo"}
    for folder, script in stages.items():
        own = _log_lines(run_dir / folder / "log.txt")
        assert f"{script} run folder: " in own[0], (folder, own[0])
        # The demo's log encloses the stage: the stage's log is one stretch of it...
        i = demo.index(own[0])
        assert demo[i:i + len(own)] == own, folder
        # ... and holds no line of another stage or of the demo itself.
        foreign = [ln for ln in own if _logger(ln) in others - {script}
                   or (_logger(ln) == "run" and " run folder: " in ln and script not in ln)]
        assert not foreign, (folder, foreign[:3])
    assert _log_lines(run_dir / "data" / "log.txt")[-1].endswith(f"wrote {run_dir / 'data'}")
    assert " run: demo run folder: " in demo[0]


def test_predict_on_new_screenshots(demo_run, tmp_path):
    run_dir, _ = demo_run
    raw = tmp_path / "new"
    phantom.generate(raw, 3, seed=99)
    summary = predict.main(predict.parse_args(
        [str(raw), "--detector", str(run_dir / "detector"), "--filter", str(run_dir / "filter"),
         "--out", str(tmp_path / "pred"), "--name", "p", "--no-progress"]))
    assert summary["images"] == 3 and not summary["skipped"]
    pred_dir = tmp_path / "pred" / "p"
    truth = json.loads((raw / "truth.json").read_text())
    for rec in truth["images"]:
        stem = rec["file"].rsplit(".", 1)[0]
        out = json.loads((pred_dir / "predictions" / f"{stem}.json").read_text())
        assert set(out["halves"]) == {"L", "R"}
        for d in out["detections"]:
            assert d["status"] in (predict.KEPT, predict.REJECTED_FILTER,
                                   predict.BELOW_DETECTOR)
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 < x2 <= rec["width"] and 0 <= y1 < y2 <= rec["height"]
        assert (pred_dir / "vis" / f"{stem}.png").stat().st_size > 0
        assert (pred_dir / "detection-results" / f"{stem}.txt").exists()


def test_a_detector_overrun_leaves_the_filter_its_floor(caplog):
    """The filter's budget is what the detector left, but never less than the floor: a
    slowed-down machine once left it -0.4 min, and the demo ended in an error after 15
    minutes of training. Over the floor it is the time left, unchanged."""
    floor = demo.FILTER_FLOOR_MINUTES
    assert demo.filter_budget_minutes(200.0) == pytest.approx(200.0 / 60.0)
    assert not caplog.records
    for left_s in (-24.0, 0.0, floor * 60.0 - 1.0):
        assert demo.filter_budget_minutes(left_s) == floor
    assert "overruns its budget" in caplog.text


def test_a_detector_without_an_operating_point_stops_the_demo_before_the_filter(
        tmp_path, monkeypatch):
    """A budget too small to learn once left the fold models with no out-of-fold lesion, so
    no score_threshold in model.json: the filter then trained for minutes and the demo ended
    in a KeyError. It now stops after the detector, saying why."""
    def detector_that_learned_nothing(args):
        return {"epochs": 1, "oof_f1_threshold": None}

    def filter_must_not_run(args):
        raise AssertionError("the filter trained without a detector operating point")

    monkeypatch.setattr(demo.train_yolo3, "main", detector_that_learned_nothing)
    monkeypatch.setattr(demo.train_filter, "main", filter_must_not_run)
    with pytest.raises(SystemExit) as stop:
        demo.main(demo.parse_args(["--tiny", "--out", str(tmp_path), "--name", "none",
                                   "--no-progress", "--seed", "3"]))
    message = str(stop.value)
    assert "no operating point" in message and "1 epoch(s) a fold" in message
    assert "--time-budget" in message
    assert (tmp_path / "none" / "data").is_dir()  # what ran before stays
