"""train_yolo3.py end to end at tiny settings: every artefact of a 2-set x 2-fold CV run (one
set diverges on purpose) with the fold ensemble as final model, out-of-fold coverage, scores
that agree across the three ways of computing them (fold scores at the last epoch, never a
chosen one), folds in parallel processes, resuming a run killed with SIGKILL (retrained final
model), the time budget, loader workers that do not change the model (find_lr: test_find_lr)."""
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

import train_yolo3
from datasets.detector import data as dd
from eval import detection as det_eval
from models import yolo, yolo_train
from tests.sigkill import kill_after_first_row

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# In-process jobs (--no-job-processes): the tests below watch one process's log and state;
# test_job_processes_train_the_same_models runs the recipe's child processes.
TINY = ["--network", "yolo3_mobilenet0.25_custom", "--data-shape", "64", "--batch-size", "2",
        "--num-workers", "0", "--progress", "off", "--gpus", "", "--no-job-processes"]


@pytest.fixture(scope="module")
def data_dir(tiny_detection_data):
    return tiny_detection_data[0]


@pytest.fixture(scope="module")
def cv_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    # Set 1's learning rate diverges: a CV result (map 0, "diverged"), not a crash.
    # With the weight average (off by default), so its checkpoint and model are covered too.
    args = train_yolo3.parse_args(["--data", str(data_dir), "--grid", "lr=1e-3,1e3",
                                   "--epochs", "2", "--val-interval", "2", "--out", str(out),
                                   "--name", "cv", "--ema-decay", "auto", *TINY])
    summary = train_yolo3.main(args)
    return out / "cv", summary


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cv_run_writes_every_artefact(cv_run, data_dir):
    run, summary = cv_run
    splits = json.loads((data_dir / "splits.json").read_text())
    for name in ("args.json", "env.json", "log.txt", "cv_results.csv", "cv_summary.csv",
                 "model.json", "oof_detections.json", "test_detections.json", "summary.json"):
        assert (run / name).is_file(), name
    results = _csv(run / "cv_results.csv")
    assert [(r["set"], r["fold"]) for r in results] == [("0", "0"), ("0", "1"), ("1", "0"),
                                                          ("1", "1")]
    assert {"params", "lr", "epochs", "best_epoch", "map_voc12", "map_voc07"} <= set(results[0])
    table = _csv(run / "cv_summary.csv")
    assert [r["set"] for r in table] == ["0", "1"]
    assert sorted(r["rank"] for r in table) == ["1", "2"]
    assert not (run / "final").exists()  # the final model is the fold ensemble
    for job in ("set0_fold0", "set0_fold1"):
        rows = _csv(run / job / "metrics.csv")
        assert [r["epoch"] for r in rows] == ["0", "1"], job
        # --val-interval 2: epoch 0 is not validated, the last epoch always is.
        assert rows[0]["map_voc12"] == "" and rows[1]["map_voc12"] != ""
        for f in ("last.params", "last.states", "last.json", "last.ema", "model.params"):
            assert (run / job / "checkpoints" / f).is_file(), (job, f)
        assert not (run / job / "checkpoints" / "best.params").exists()
    for k in (0, 1):
        done = json.loads((run / f"set1_fold{k}" / "done.json").read_text())
        assert "non-finite loss" in done["diverged"]
        assert done["map_voc12"] == 0.0 and not (run / f"set1_fold{k}" /
                                                 "val_detections.json").exists()
    assert [r["diverged"] != "" for r in results] == [False, False, True, True]
    assert summary["best_set"] == 0
    for key in ("cv_map_mean", "cv_map_std", "test_map_voc12", "test_map_voc07", "best_set",
                "test_random_map_voc12"):
        assert key in summary
    for folder, ids in (("oof", splits["train"]), ("test", splits["test"])):
        for sub in ("ground-truth", "detection-results"):
            names = sorted(p.stem for p in (run / folder / sub).glob("*.txt"))
            assert names == sorted(ids), (folder, sub)
    model = json.loads((run / "model.json").read_text())
    assert model["members"] == [f"set0_fold{k}/checkpoints/model.params" for k in (0, 1)]
    assert model["data_shape"] == 64 and model["offset"] == 1 == summary["offset"]
    assert summary["final_model"] == "ensemble"
    # predict.py's operating point: best F2 on the out-of-fold detections, when there are any
    assert model.get("score_threshold") == summary.get("oof_threshold")
    if "oof_threshold" in summary:
        # the out-of-fold scoring's own inputs, as the Cartucho folders hold them
        oof_gt, oof, _ = det_eval.read_cartucho(run / "oof" / "ground-truth",
                                                run / "oof" / "detection-results",
                                                model["classes"])
        assert summary["threshold_beta"] == 2.0
        assert summary["oof_threshold"] == det_eval.best_fbeta_threshold(
            oof_gt, oof, 2.0, offset=1)["score_threshold"]
        assert summary["oof_f1_threshold"] == det_eval.best_f1_threshold(
            oof_gt, oof, offset=1)["score_threshold"]
        assert model["threshold_rule"] == "best F2 on out-of-fold detections"
    nets, _ = yolo.load_model_json(run / "model.json")
    for k, net in enumerate(nets):
        done = json.loads((run / f"set0_fold{k}" / "done.json").read_text())
        assert yolo_train.param_digest(net) == done["model_digest"]


def test_out_of_fold_predictions_cover_the_training_set_once(cv_run, data_dir):
    run, summary = cv_run
    splits = json.loads((data_dir / "splits.json").read_text())
    oof, classes = det_eval.read_detections_json(run / "oof_detections.json")
    assert classes == ["lesion"]
    assert sorted(oof) == sorted(splits["train"])
    best = summary["best_set"]
    for k, fold in enumerate(splits["folds"]):
        dets, _ = det_eval.read_detections_json(run / f"set{best}_fold{k}" /
                                                "val_detections.json")
        assert sorted(dets) == sorted(fold["val"])
        for sid in fold["val"]:  # OOF entries are that fold model's own predictions
            np.testing.assert_array_equal(oof[sid]["scores"], dets[sid]["scores"])
    test, _ = det_eval.read_detections_json(run / "test_detections.json")
    assert sorted(test) == sorted(splits["test"])
    for d in list(oof.values()) + list(test.values()):
        assert np.all(d["scores"] >= 0.01) and len(d["scores"]) <= 100


def test_scores_agree_with_the_metrics_rows_and_the_cartucho_cli(cv_run, data_dir, capsys):
    run, summary = cv_run
    # A fold's recorded mAP = its LAST epoch's metrics.csv row (no epoch chosen on the fold
    # it is scored on) = mAP of its saved detections; the best epoch is an extra column.
    for r in _csv(run / "cv_results.csv"):
        if r["diverged"]:
            continue
        job = run / f"set{r['set']}_fold{r['fold']}"
        rows = _csv(job / "metrics.csv")
        assert float(rows[-1]["map_voc12"]) == pytest.approx(float(r["map_voc12"]), abs=1e-5)
        assert float(r["best_epoch_map_voc12"]) == pytest.approx(
            max(float(x["map_voc12"]) for x in rows if x["map_voc12"]), abs=1e-5)
        dets, _ = det_eval.read_detections_json(job / "val_detections.json")
        gt = dd.DetectionData(data_dir, ["lesion"], None).ground_truth(sorted(dets))
        res = det_eval.evaluate(gt, dets, ["lesion"], offset=1)
        assert res["map_voc12"] == pytest.approx(float(r["map_voc12"]), abs=1e-5)
    # The test mAP in summary.json is what the Cartucho scorer reads from test/ (offset 1).
    det_eval.main(det_eval.parse_args(["--gt", str(run / "test" / "ground-truth"),
                                       "--dr", str(run / "test" / "detection-results"),
                                       "--offset", "1"]))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"mAP = {100 * summary['test_map_voc12']:.2f}%"


def test_ensemble_test_detections_are_the_fused_fold_predictions(cv_run, data_dir):
    from eval import fusion
    run, summary = cv_run
    splits = json.loads((data_dir / "splits.json").read_text())
    nets, model = yolo.load_model_json(run / "model.json")
    data = dd.DetectionData(data_dir, model["classes"], None)
    per_member = []
    for net in nets:
        loader = dd.val_loader(data.subset(splits["test"]), model["data_shape"], 2)
        per_member.append(dict(zip(splits["test"], yolo_train.predict(net, loader, [mx.cpu()]))))
    want = fusion.fuse_detections(per_member, iou_thr=model["fusion"]["iou"])
    got, _ = det_eval.read_detections_json(run / "test_detections.json")
    for sid in splits["test"]:
        keep = np.flatnonzero(want[sid]["scores"] >= 0.01)[:100]  # --score-thresh, --top-k
        np.testing.assert_allclose(got[sid]["scores"], want[sid]["scores"][keep], rtol=1e-6)
        np.testing.assert_allclose(got[sid]["boxes"], want[sid]["boxes"][keep], rtol=1e-6)


def test_folds_in_parallel_processes_match_the_sequential_run(cv_run, data_dir, tmp_path):
    """--folds-parallel 2: each fold in its own process gives the sequential run's result.

    With the same OpenMP thread count as this process the children reproduce it exactly;
    with another count MKLDNN sums in another order and the violent first steps of a
    from-scratch YOLOv3 turn that into losses 30 % apart within an epoch (measured)."""
    run, _ = cv_run
    # This process's OpenMP thread count: MXNet takes OMP_NUM_THREADS, else half the CPUs
    # on x86 (src/engine/openmp.cc; measured: unset gives the 1-thread numbers on 2 CPUs).
    threads = os.environ.get("OMP_NUM_THREADS") or os.environ.get("MXNET_OMP_MAX_THREADS") \
        or str(max(1, (os.cpu_count() or 2) // 2))
    args = train_yolo3.parse_args(["--data", str(data_dir), "--grid", "lr=1e-3",
                                   "--epochs", "2", "--val-interval", "2",
                                   "--out", str(tmp_path), "--name", "par",
                                   "--folds-parallel", "2", "--fold-threads", threads,
                                   "--ema-decay", "auto", *TINY])
    summary = train_yolo3.main(args)
    for k in (0, 1):
        par = json.loads((tmp_path / "par" / f"set0_fold{k}" / "done.json").read_text())
        seq = json.loads((run / f"set0_fold{k}" / "done.json").read_text())
        assert par["param_digest"] == seq["param_digest"], k
        assert (par["best_epoch"], par["map_voc12"]) == (seq["best_epoch"], seq["map_voc12"])
        rows_par = _csv(tmp_path / "par" / f"set0_fold{k}" / "metrics.csv")
        rows_seq = _csv(run / f"set0_fold{k}" / "metrics.csv")
        for a, b in zip(rows_par, rows_seq):
            for col in ("lr", "loss_obj", "loss_center", "loss_scale", "loss_cls"):
                assert a[col] == b[col], (k, col)
        assert (tmp_path / "par" / f"set0_fold{k}" / "log.txt").is_file()
    assert (tmp_path / "par" / "oof_detections.json").is_file()
    assert "test_map_voc12" in summary


def _rows(path):
    return [int(r["epoch"]) for r in _csv(path)] if path.exists() else []


def test_resume_after_sigkill_finishes_every_epoch_once(data_dir, tmp_path):
    epochs = 3
    cmd = [sys.executable, str(ROOT / "train_yolo3.py"), "--data", str(data_dir),
           "--epochs", str(epochs), "--val-interval", "3", "--out", str(tmp_path),
           "--name", "killed", "--final-model", "retrain", *TINY]
    run = tmp_path / "killed"
    assert kill_after_first_row(cmd, ROOT, run / "set0_fold0" / "metrics.csv")
    assert not (run / "summary.json").exists()
    assert not (run / "set0_fold1" / "done.json").exists()
    res = subprocess.run([sys.executable, str(ROOT / "train_yolo3.py"), "--resume", str(run),
                          "--progress", "off", "--no-job-processes"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    for job in ("set0_fold0", "set0_fold1", "final"):
        assert _rows(run / job / "metrics.csv") == list(range(epochs)), job
        assert (run / job / "done.json").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_epochs"] == epochs and summary["final_model"] == "retrain"
    model = json.loads((run / "model.json").read_text())
    assert model["members"] == ["final/checkpoints/model.params"]
    nets, _ = yolo.load_model_json(run / "model.json")
    assert yolo_train.param_digest(nets[0]) == summary["model_digest"]
    assert "resumed from" in (run / "log.txt").read_text()
    assert list(run.glob("args.resume-*.json"))


def test_time_budget_sizes_every_job_and_records_the_plan(data_dir, tmp_path):
    args = train_yolo3.parse_args(["--data", str(data_dir), "--time-budget", "1.0",
                                   "--out", str(tmp_path), "--name", "tb", *TINY])
    summary = train_yolo3.main(args)
    run = tmp_path / "tb"
    plan = json.loads((run / "args.json").read_text())["derived"]["time_budget"]
    assert plan["epochs"] >= 1 and plan["minutes"] == 1.0
    assert plan["planned_s"] <= plan["budget_s"]
    # every fold model trains its recorded epochs, schedule included: the first starts with
    # the plan's, a later one re-planned when the first ran slower than calibrated, and each
    # is cut inside itself when it runs slower than its share allows (at these sizes they
    # do: checkpoints and validation every epoch of 2 iterations), to no fewer than half
    assert summary["epochs"] == plan["epochs"]
    cuts = plan.get("cut_in_job", {})
    assert cuts.get("set0_fold0", {}).get("from", plan["epochs"]) == plan["epochs"]
    for name, cut in cuts.items():
        assert plan["job_epochs"][name] == cut["to"] < cut["from"]
        assert cut["to"] >= math.ceil(0.5 * plan["epochs"]) or name == "final"
    for k in (0, 1):
        rows = _csv(run / f"set0_fold{k}" / "metrics.csv")
        assert len(rows) == plan["job_epochs"][f"set0_fold{k}"] == summary["fold_epochs"][k]
        assert float(rows[-1]["lr"]) < 0.01 * float(rows[len(rows) // 2]["lr"])
    with pytest.raises(ValueError, match="drop 'epochs' from --grid"):
        train_yolo3.main(train_yolo3.parse_args(["--data", str(data_dir), "--time-budget", "1",
                                                 "--grid", "epochs=3", "--out", str(tmp_path),
                                                 *TINY]))


def _budget_run_in_job_processes(data_dir, tmp_path, name):
    """train_yolo3.py --time-budget 0.25 on TINY settings, each fold in its own process;
    returns the summary, the run folder and its recorded plan."""
    argv = ["--data", str(data_dir), "--time-budget", "0.25", "--out", str(tmp_path),
            "--name", name, *[a for a in TINY if a != "--no-job-processes"],
            "--job-processes"]
    summary = train_yolo3.main(train_yolo3.parse_args(argv))
    run = tmp_path / name
    return summary, run, json.loads((run / "args.json").read_text())["derived"]["time_budget"]


def test_parallel_folds_under_a_budget_say_they_are_not_planned(data_dir, tmp_path):
    """--folds-parallel with --time-budget: planned as sequential jobs, never re-planned or
    cut (no job_started_at, no deadline), and the run folder and its log say so."""
    argv = ["--data", str(data_dir), "--time-budget", "0.25", "--out", str(tmp_path),
            "--name", "par", "--folds-parallel", "2", "--fold-threads", "1", *TINY]
    summary = train_yolo3.main(train_yolo3.parse_args(argv))
    run = tmp_path / "par"
    plan = json.loads((run / "args.json").read_text())["derived"]["time_budget"]
    assert plan["folds_parallel_unplanned"] == 2
    assert "job_started_at" not in plan and "cut_in_job" not in plan
    assert summary["fold_epochs"] == [plan["epochs"]] * 2
    assert "neither re-planned nor cut" in (run / "log.txt").read_text()


def test_time_budget_replans_later_folds_and_records_them(data_dir, tmp_path, monkeypatch):
    """A fold the budget re-plans (models.budget.replan_epochs, here made to cut fold 1 by
    one epoch) trains that many epochs in its own process (the recipe's job processes: it
    reads the count back from args.json), is read back without retraining, and says so in
    every record."""
    from models import budget
    monkeypatch.setattr(budget, "replan_epochs",
                        lambda plan, done, last=None, now=None: plan["epochs"] - len(done))
    # The plan itself from fixed rates and budget, not from this machine's measured speed
    # and the seconds spent before planning (a slow or busy CPU bought 1 epoch and failed)
    plan_detector = budget.plan_detector
    fixed = {"train_images_per_s": 2.0, "predict_images_per_s": 10.0, "job_overhead_s": 1.0}
    monkeypatch.setattr(budget, "plan_detector", lambda budget_s, rates, *a: plan_detector(
        40.0, {**rates, **fixed}, *a))
    summary, run, plan = _budget_run_in_job_processes(data_dir, tmp_path, "tb")
    e = plan["epochs"]
    assert e >= 2
    assert plan["job_epochs"] == {"set0_fold0": e, "set0_fold1": e - 1}
    assert list(plan["job_started_at"]) == ["set0_fold0", "set0_fold1"]
    for k, want in ((0, e), (1, e - 1)):
        assert len(_csv(run / f"set0_fold{k}" / "metrics.csv")) == want
        assert json.loads((run / f"set0_fold{k}" / "done.json").read_text())["epochs"] == want
    assert [int(r["epochs"]) for r in _csv(run / "cv_results.csv")] == [e, e - 1]
    assert summary["fold_epochs"] == [e, e - 1] and summary["epochs"] == e
    assert len(list(run.glob("set0_fold*/console.txt"))) == 2  # each fold in its process


def test_a_fold_child_is_cut_by_its_deadline_and_the_parent_keeps_its_record(
        data_dir, tmp_path, monkeypatch):
    """A fold that runs past the deadline its parent gave it (models.budget.job_deadline,
    here made already past for fold 1) is cut inside its own process (the recipe's job
    processes) to the floor, half the planned epochs; its LR schedule is rebuilt, so the
    cut count ends annealed; the cut is in every record, the parent's included."""
    from models import budget, schedules
    plan_detector = budget.plan_detector
    fixed = {"train_images_per_s": 2.0, "predict_images_per_s": 10.0, "job_overhead_s": 1.0}
    monkeypatch.setattr(budget, "plan_detector", lambda budget_s, rates, *a: plan_detector(
        40.0, {**rates, **fixed}, *a))
    job_deadline = budget.job_deadline
    monkeypatch.setattr(budget, "job_deadline", lambda plan, started, now: now if started
                        else job_deadline(plan, started, now))
    summary, run, plan = _budget_run_in_job_processes(data_dir, tmp_path, "cut")
    e = plan["epochs"]
    half = math.ceil(e / 2)
    assert e >= 3 and half < e
    assert plan["job_epochs"] == {"set0_fold0": e, "set0_fold1": half}
    assert plan["cut_in_job"] == {"set0_fold1": {"from": e, "to": half}}
    rows = _csv(run / "set0_fold1" / "metrics.csv")
    assert len(rows) == half
    done = json.loads((run / "set0_fold1" / "done.json").read_text())
    assert done["epochs"] == half
    iters, kw = done["iters_per_epoch"], done["schedule"]
    planned = schedules.build_schedule(**kw, iters_per_epoch=iters, epochs=e)
    cut = schedules.build_schedule(**dict(kw, warmup_epochs=min(kw["warmup_epochs"], half / 2)),
                                   iters_per_epoch=iters, epochs=half)
    # the last epoch ends on the cut schedule, well below where the plan's would be
    assert float(rows[-1]["lr"]) == pytest.approx(cut(half * iters), rel=1e-5)
    assert cut(half * iters) < 0.5 * planned(half * iters)
    assert len(_csv(run / "set0_fold0" / "metrics.csv")) == e
    assert summary["fold_epochs"] == [e, half]
    assert "set0_fold1 trains" in (run / "set0_fold1" / "log.txt").read_text()


def test_a_first_fold_child_raises_the_plan_for_every_fold(data_dir, tmp_path, monkeypatch):
    """A plan from a calibration that under-read the machine: the first fold, in its own
    process, measures its first epochs (models.budget.first_job_replan) and raises its own
    count, LR schedule included, and the plan's; the parent adopts the raise, the next fold
    trains the raised count, and every record says so. The plan is made up so that the count
    a raise buys does not depend on this machine's speed: 40 s of training and 80 s of
    validation an epoch planned, 550 s a job; at 80 + x s an epoch, 6 epochs for any
    x < 11 s (and no deadline within reach)."""
    from models import budget, schedules
    monkeypatch.setattr(budget, "plan_detector", lambda *a: budget.epochs_for_budget(
        1410.0, 4, 0.1, val_images=8, predict_rate=0.1, jobs=2, after_s=10.0))
    summary, run, plan = _budget_run_in_job_processes(data_dir, tmp_path, "raised")
    raised = plan["raised_in_job"]
    e, r = raised["from"], raised["to"]
    assert (e, r) == (4, 6) and budget.raise_window(e) < e and r >= budget.RAISE_MIN * e
    assert raised["job"] == "set0_fold0"
    assert plan["epochs"] == r and plan["seconds_per_epoch"] == raised["seconds_per_epoch"]
    assert plan["job_epochs"] == {"set0_fold0": r, "set0_fold1": r}
    assert "cut_in_job" not in plan
    assert summary["fold_epochs"] == [r, r] and summary["epochs"] == r
    for k in (0, 1):
        done = json.loads((run / f"set0_fold{k}" / "done.json").read_text())
        rows = _csv(run / f"set0_fold{k}" / "metrics.csv")
        assert done["epochs"] == len(rows) == r
        iters, kw = done["iters_per_epoch"], done["schedule"]
        full = schedules.build_schedule(**kw, iters_per_epoch=iters, epochs=r)
        assert float(rows[-1]["lr"]) == pytest.approx(full(r * iters), rel=1e-5)
    # fold 0 trained its first epochs on the planned schedule, the rest on the raised one
    done = json.loads((run / "set0_fold0" / "done.json").read_text())
    iters, kw = done["iters_per_epoch"], done["schedule"]
    planned = schedules.build_schedule(**kw, iters_per_epoch=iters, epochs=e)
    full = schedules.build_schedule(**kw, iters_per_epoch=iters, epochs=r)
    rows = _csv(run / "set0_fold0" / "metrics.csv")
    raise_at = budget.raise_window(e)
    assert float(rows[raise_at - 1]["lr"]) == pytest.approx(planned(raise_at * iters), rel=1e-5)
    assert planned(raise_at * iters) < 0.9 * full(raise_at * iters)
    assert "every job after it train" in (run / "set0_fold0" / "log.txt").read_text()


def test_a_budget_cut_inside_the_final_model_anneals_its_lr_and_survives_resume(
        data_dir, tmp_path, monkeypatch):
    """--only final --time-budget: when the final model's epochs run slower than its plan
    allows, its count is cut after an epoch (models.budget.epochs_within, here forced to 2),
    its LR schedule is rebuilt for the cut count, so the last epoch ends annealed, and the
    cut is recorded: every record says 2 epochs, and a resumed run trains no further."""
    from models import budget, schedules
    plan_detector = budget.plan_detector
    fixed = {"train_images_per_s": 2.0, "predict_images_per_s": 10.0, "job_overhead_s": 1.0}
    monkeypatch.setattr(budget, "plan_detector", lambda budget_s, rates, *a: plan_detector(
        40.0, {**rates, **fixed}, *a))
    monkeypatch.setattr(budget, "epochs_within",
                        lambda deadline, now, done, total, seconds: min(total, 2))
    argv = ["--data", str(data_dir), "--only", "final", "--time-budget", "1", "--out",
            str(tmp_path), "--name", "cut", *TINY]
    summary = train_yolo3.main(train_yolo3.parse_args(argv))
    run = tmp_path / "cut"
    plan = json.loads((run / "args.json").read_text())["derived"]["time_budget"]
    assert plan["epochs"] > 2 and plan["job_epochs"] == {"final": 2}
    assert plan["cut_in_job"] == {"final": {"from": plan["epochs"], "to": 2}}
    done = json.loads((run / "final" / "done.json").read_text())
    assert done["epochs"] == summary["final_epochs"] == 2
    rows = _csv(run / "final" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    iters, kw = done["iters_per_epoch"], done["schedule"]
    planned = schedules.build_schedule(**kw, iters_per_epoch=iters, epochs=plan["epochs"])
    cut = schedules.build_schedule(**dict(kw, warmup_epochs=min(kw["warmup_epochs"], 1.0)),
                                   iters_per_epoch=iters, epochs=2)
    # the LR after each epoch's last update: the plan's after the first (the cut comes after
    # it), the cut schedule's after the second
    assert float(rows[0]["lr"]) == pytest.approx(planned(iters), rel=1e-5)
    assert float(rows[1]["lr"]) == pytest.approx(cut(2 * iters), rel=1e-5)
    assert cut(2 * iters) < 0.25 * planned(2 * iters)  # 4 iterations: one step from the end
    monkeypatch.undo()
    (run / "final" / "done.json").unlink()  # make the resumed run rebuild the job
    again = train_yolo3.main(train_yolo3.parse_args(
        ["--resume", str(run), "--progress", "off", "--gpus", ""]))
    assert len(_csv(run / "final" / "metrics.csv")) == 2
    assert again["final_epochs"] == 2 and again["param_digest"] == summary["param_digest"]


def test_loader_workers_do_not_change_the_model(data_dir, tmp_path):
    """Augmentation is seeded per item (seed, epoch, index): the same model loading in the
    training process, in its loader thread (the CPU recipe's default) or in 1 loader
    process (same OpenMP thread count)."""
    digests = []
    for workers, loader in (("0", "--no-loader-thread"), ("0", "--loader-thread"),
                            ("1", "--no-loader-thread"), ("0", "--loader-burst=3")):
        argv = ["--data", str(data_dir), "--only", "0:0", "--epochs", "2", "--out",
                str(tmp_path), "--name", f"w{workers}{loader}", loader, *TINY]
        argv[argv.index("--num-workers") + 1] = workers
        digests.append(train_yolo3.main(train_yolo3.parse_args(argv))["param_digest"])
        if loader.startswith("--loader-burst"):  # an explicit burst replaced the thread
            options = json.loads((tmp_path / argv[argv.index("--name") + 1] /
                                  "args.json").read_text())["options"]
            assert (options["loader_burst"], options["loader_thread"]) == (3, False)
    assert digests[0] == digests[1] == digests[2] == digests[3]
    with pytest.raises(ValueError, match="use it with --num-workers 0"):
        argv = ["--data", str(data_dir), "--loader-thread", "--out", str(tmp_path), *TINY]
        argv[argv.index("--num-workers") + 1] = "1"
        train_yolo3.main(train_yolo3.parse_args(argv))
    for bad, match in (("--loader-burst=0", "at least 1 batch"),
                       ("--loader-burst=2", "--num-workers 0 and --no-loader-thread")):
        with pytest.raises(ValueError, match=match):
            argv = ["--data", str(data_dir), bad, "--out", str(tmp_path), *TINY]
            argv[argv.index("--num-workers") + 1] = "1"
            train_yolo3.main(train_yolo3.parse_args(argv))


def test_job_processes_train_the_same_models(data_dir, tmp_path):
    """--job-processes (the CPU recipe's default) trains each fold in a child process, one
    at a time, with this process's thread count: the same fold models as in-process jobs."""
    digests = {}
    for flag in ("--no-job-processes", "--job-processes"):
        argv = ["--data", str(data_dir), "--epochs", "1", "--out", str(tmp_path), "--name",
                flag.strip("-"), *[a for a in TINY if a != "--no-job-processes"], flag]
        train_yolo3.main(train_yolo3.parse_args(argv))
        run = tmp_path / flag.strip("-")
        digests[flag] = [json.loads((run / f"set0_fold{k}" / "done.json").read_text())[
            "param_digest"] for k in range(2)]
        consoles = list(run.glob("set0_fold*/console.txt"))
        assert len(consoles) == (2 if flag == "--job-processes" else 0)
    assert digests["--job-processes"] == digests["--no-job-processes"]


def test_job_children_take_the_parents_loader(data_dir, tmp_path):
    """With loader processes the CPU recipe's loader thread stands down; a job child must
    get that resolved choice, not the recipe's thread beside --num-workers (which a child
    would refuse as an explicit --loader-thread)."""
    argv = ["--data", str(data_dir), "--epochs", "1", "--out", str(tmp_path), "--name", "w1",
            *[a for a in TINY if a != "--no-job-processes"],
            "--job-processes"]
    argv[argv.index("--num-workers") + 1] = "1"
    train_yolo3.main(train_yolo3.parse_args(argv))
    for k in range(2):
        assert (tmp_path / "w1" / f"set0_fold{k}" / "done.json").is_file()


def test_resumed_only_final_run_resumes_the_final_model(data_dir, tmp_path):
    """`--resume RUN` of a run started with `--only final` trains that model on, not the
    whole CV (it used to start set0_fold0); a job child still resumes with its own --only."""
    argv = ["--data", str(data_dir), "--epochs", "1", "--only", "final", "--out",
            str(tmp_path), "--name", "f", *TINY]
    first = train_yolo3.main(train_yolo3.parse_args(argv))
    run = tmp_path / "f"
    resumed = train_yolo3.main(train_yolo3.parse_args(
        ["--resume", str(run), "--progress", "off", "--gpus", ""]))
    assert not list(run.glob("set*_fold*"))
    assert resumed["param_digest"] == first["param_digest"]  # nothing left to train
