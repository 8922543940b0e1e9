"""Filter training: data split/balancing/augmentation, and train_filter.py end to end + resume."""
import json

import numpy as np
import pytest
from mxnet import gluon

from datasets.filter import data as fd
from datasets.filter.crops.fusion import difference_channel
from infra import runs
from tests.filter_fixtures import make_data, write_detections


# ---------------------------------------------------------------- data pieces

def test_group_split_keeps_groups_apart_and_both_classes():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"g{i}" for i in range(20)], 5)
    labels = np.where(rng.random(100) < 0.3, 1, -1)
    tr, va = fd.group_split(labels, groups, 0.2, seed=0)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(100))
    assert not set(groups[tr]) & set(groups[va])
    assert set(labels[va].tolist()) == {-1, 1}
    tr2, va2 = fd.group_split(labels, groups, 0.2, seed=0)
    assert va.tolist() == va2.tolist()
    with pytest.raises(ValueError, match="val-frac"):
        fd.group_split(labels, groups, 1.5)


@pytest.mark.parametrize("balance", fd.BALANCE_MODES)
def test_epoch_indices_balance(balance):
    labels = np.array([1] * 10 + [-1] * 90)
    idx = fd.epoch_indices(labels, epoch=3, seed=1, balance=balance, neg_ratio=2.0)
    n_pos, n_neg = (labels[idx] == 1).sum(), (labels[idx] == -1).sum()
    if balance == "none":
        assert sorted(idx.tolist()) == list(range(100))
    elif balance == "under":
        assert (n_pos, n_neg) == (10, 20)
        assert len(set(idx.tolist())) == 30  # no negative drawn twice
    elif balance == "over":
        assert (n_pos, n_neg) == (45, 90)
        assert set(idx[labels[idx] == 1].tolist()) == set(range(10))  # every positive kept
    else:  # both: positives up, negatives down, ratio 2
        assert n_pos > 10 and n_neg < 90 and abs(n_neg / n_pos - 2.0) < 0.1
    same = fd.epoch_indices(labels, epoch=3, seed=1, balance=balance, neg_ratio=2.0)
    assert idx.tolist() == same.tolist()


def test_augment_recomputes_difference_and_cancels_shared_brightness():
    rng = np.random.default_rng(2)
    c1 = rng.integers(60, 190, (32, 32)).astype(np.uint8)
    c2 = rng.integers(60, 190, (32, 32)).astype(np.uint8)
    crop = np.dstack([c1, c2, difference_channel(c1, c2)])
    full = fd.CropAugment(hflip=True, vflip=True, rotate_deg=15, brightness=0.2, contrast=0.2,
                          side_gain=0.1)
    for seed in range(5):
        out = full(crop, np.random.default_rng(seed)).astype(int)
        np.testing.assert_array_equal(out[..., 2], (out[..., 0] - out[..., 1]) // 2 + 128)
    # a pure brightness change of both sides leaves the difference as it was (no clipping here)
    bright = fd.CropAugment(hflip=False, rotate_deg=0, brightness=0.2, contrast=0.0)
    out = bright(crop, np.random.default_rng(0))
    assert not np.array_equal(out[..., 0], c1)
    np.testing.assert_array_equal(out[..., 2], crop[..., 2])
    # flips move all three channels alike
    flip = fd.CropAugment(hflip=True, rotate_deg=0, brightness=0, contrast=0)
    flipped = [flip(crop, np.random.default_rng(s)) for s in range(6)]
    assert any(np.array_equal(f, crop[:, ::-1]) for f in flipped)
    assert all(np.array_equal(f, crop) or np.array_equal(f, crop[:, ::-1]) for f in flipped)


def test_batches_do_not_depend_on_workers():
    rng = np.random.default_rng(3)
    crops = rng.integers(0, 256, (12, 16, 16, 3)).astype(np.uint8)
    labels = np.array([1, -1] * 6)
    batches = {}
    for workers in (0, 2):
        ds = fd.CropDataset(crops, labels, fd.CropAugment(), seed=5)
        sampler = fd.EpochSampler(labels, seed=5)
        sampler.set_epoch(2)
        loader = gluon.data.DataLoader(ds, batch_size=4, sampler=sampler, num_workers=workers)
        batches[workers] = [(x.asnumpy(), y.asnumpy()) for x, y in loader]
    for (x0, y0), (x2, y2) in zip(batches[0], batches[2]):
        np.testing.assert_array_equal(x0, x2)
        np.testing.assert_array_equal(y0, y2)
    assert batches[0][0][1].dtype == np.float32 and set(batches[0][0][1].tolist()) <= {-1, 1}


# ---------------------------------------------------------------- the script

import train_filter  # noqa: E402  (imports mxnet and the eval package; keep after the unit tests)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_filter")
    data, lookalikes = make_data(root / "DATA", n_sources=12, seed=0, test_sources=4)
    splits = json.loads((data / "splits.json").read_text())
    oof = write_detections(data, splits["train"], lookalikes, root / "oof.json", seed=0)
    test = write_detections(data, splits["test"], lookalikes, root / "test.json", seed=1)
    return root, data, oof, test


def _argv(root, data, name, *extra):
    return ["--data", str(data), "--out", str(root / "runs"), "--name", name,
            "--epochs", "2", "--batch-size", "8", "--crop-size", "32", "--search-radius", "4",
            "--stride", "2", "--val-frac", "0.34", "--lr", "0.01", *extra]


@pytest.fixture(scope="module")
def first_run(tiny_set):
    root, data, oof, test = tiny_set
    args = train_filter.parse_args(_argv(root, data, "e2e", "--detections", str(oof),
                                         "--test-detections", str(test)))
    summary = train_filter.main(args)
    return root / "runs" / "e2e", summary


def test_end_to_end_writes_every_artefact(first_run):
    run_dir, summary = first_run
    for rel in ("args.json", "env.json", "log.txt", "metrics.csv", "summary.json",
                "filter.json", "test_scores.csv", "val_scores.csv", "crops/crops.json",
                "crops/train.csv", "crops/test.csv", "crops/train_preview.png",
                "crops/test_preview.png", "checkpoints/best.params", "checkpoints/best.json",
                "checkpoints/last.params",
                "checkpoints/last.states", "checkpoints/last.json", "plots/metrics.png",
                "plots/test_roc.png", "plots/test_pr.png", "plots/test_confusion.png",
                "plots/val_roc.png"):
        assert (run_dir / rel).exists(), rel
    assert [int(r["epoch"]) for r in runs.MetricsCSV(run_dir / "metrics.csv").rows()] == [0, 1]
    spec = json.loads((run_dir / "filter.json").read_text())
    assert spec["threshold"] == summary["threshold"]
    best = json.loads((run_dir / "checkpoints" / "best.json").read_text())
    assert best == {"epoch": summary["best_epoch"], "metric": "val_auc",
                    "value": summary["best_val_auc"]}
    # the model: the mean of the best --snapshots (3) epochs of a 2-epoch run: both, best first
    rows = runs.MetricsCSV(run_dir / "metrics.csv").rows()
    by_auc = sorted(range(len(rows)), key=lambda e: (-float(rows[e]["val_auc"]), e))
    assert summary["snapshot_epochs"] == by_auc[:3] and by_auc[0] == summary["best_epoch"]
    assert spec["members"] == [f"checkpoints/top_{e:03d}.params" for e in by_auc[:3]]
    assert all((run_dir / m).exists() for m in spec["members"]) and "params" not in spec
    assert {"feature", "distance", "context", "search_radius", "stride", "crop_size",
            "min_score", "top_k"} <= set(spec)
    assert spec["distance"] is not None  # resolved, not "default"
    test_rows = train_filter.crop_index.read_index(run_dir / "test_scores.csv")
    n_test = len(train_filter.crop_index.read_index(run_dir / "crops" / "test.csv"))
    assert len(test_rows) == n_test == summary["test_pos"] + summary["test_neg"]
    scores = np.array([float(r["filter_score"]) for r in test_rows])
    assert np.all(np.abs(scores) <= 1)
    for key in ("test_auc", "test_f1", "test_precision", "test_recall", "test_f2", "test_f0_5",
                "test_accuracy", "val_auc", "val_f1", "train_pos", "train_neg", "val_pos",
                "val_neg"):
        assert key in summary, key
    assert summary["train_pos"] > 0 and summary["train_neg"] > 0
    # the threshold applied to test is the validation one, unchanged
    keep = np.array([int(r["filter_keep"]) for r in test_rows])
    np.testing.assert_array_equal(keep, (scores >= spec["threshold"]).astype(int))


class Interrupt(Exception):
    pass


def _final_weights(run_dir):
    import mxnet as mx
    saved = mx.nd.load(str(run_dir / "checkpoints" / "last.params"))
    return {k: v.asnumpy() for k, v in saved.items()}


def test_resume_after_interrupted_run_matches_uninterrupted(first_run, tiny_set, monkeypatch):
    root, data, oof, test = tiny_set
    crops = str(first_run[0] / "crops")
    ref = train_filter.main(train_filter.parse_args(
        _argv(root, data, "ref", "--crops", crops, "--epochs", "3")))
    calls = {"n": 0}
    real = train_filter.predict_scores

    def crash_in_second_validation(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupt()
        return real(*a, **k)

    monkeypatch.setattr(train_filter, "predict_scores", crash_in_second_validation)
    with pytest.raises(Interrupt):
        train_filter.main(train_filter.parse_args(
            _argv(root, data, "crashy", "--crops", crops, "--epochs", "3")))
    monkeypatch.setattr(train_filter, "predict_scores", real)
    crashed = root / "runs" / "crashy"
    assert [int(r["epoch"]) for r in runs.MetricsCSV(crashed / "metrics.csv").rows()] == [0]
    # a conflicting option on resume is refused, naming the option
    with pytest.raises(ValueError, match="--epochs"):
        train_filter.main(train_filter.parse_args(
            _argv(root, data, "x", "--crops", crops, "--epochs", "5", "--resume", str(crashed))))
    out = train_filter.main(train_filter.parse_args(
        ["--data", str(data), "--crops", crops, "--resume", str(crashed)]))
    assert out["epochs_run"] == 2
    rows = runs.MetricsCSV(crashed / "metrics.csv").rows()
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    ref_rows = runs.MetricsCSV(root / "runs" / "ref" / "metrics.csv").rows()
    for a, b in zip(rows, ref_rows):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-4)
    got, want = _final_weights(crashed), _final_weights(root / "runs" / "ref")
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert out["threshold"] == pytest.approx(ref["threshold"], rel=1e-4)


def test_filter_json_rebuilds_crops_and_scores_for_predict(first_run, tiny_set):
    """What predict.py does: filter.json alone -> the same crops and the same scores."""
    from datasets.filter.crops import folder as crop_folder
    from datasets.filter.crops import fusion as crop_fusion
    from datasets.filter.crops import index as crop_index
    from datasets.filter.crops import options as crop_options
    from models import filter_net
    run_dir, _ = first_run
    _, data, _, _ = tiny_set
    net, spec = filter_net.load_filter(run_dir / "filter.json")
    rows = crop_index.read_index(run_dir / "test_scores.csv")
    image_id = rows[0]["image_id"]
    mine = [r for r in rows if r["image_id"] == image_id]
    boxes = [[r["x1"], r["y1"], r["x2"], r["y2"]] for r in mine]
    lesion = crop_folder.read_gray(data / "JPEGImages" / f"{image_id}.jpg")
    reference = crop_folder.read_gray(data / "Reference" / f"{image_id}.jpg")
    search = {k: spec[k] for k in crop_options.SEARCH_KEYS}
    crops, matches = crop_fusion.crops_for_detections(lesion, reference, boxes, search,
                                                      spec["crop_size"])
    np.testing.assert_array_equal(crops, crop_folder.load_crops(run_dir / "crops", mine))
    assert [(m.dx, m.dy) for m in matches] == [(r["dx"], r["dy"]) for r in mine]
    scores = filter_net.score_crops(net, crops)
    np.testing.assert_allclose(scores, [float(r["filter_score"]) for r in mine], atol=1e-5)
    # the ensemble's score is the plain mean of its members' scores
    assert len(spec["members"]) == 2
    each = [filter_net.score_crops(filter_net.load_members([run_dir / m],
                                                           spec["net"]["dropout"]), crops)
            for m in spec["members"]]
    np.testing.assert_allclose(scores, np.mean(each, axis=0), atol=1e-6)
    assert np.abs(each[0] - each[1]).max() > 1e-4  # two different epochs, not one net twice


def test_resume_after_sigkill_finishes_every_epoch_once(first_run, tiny_set, tmp_path):
    """The detector's test, for the filter: SIGKILL after the first checkpoint, then
    ``--resume RUN`` alone finishes the run with one metrics row per epoch."""
    import subprocess
    import sys
    from pathlib import Path
    from tests.sigkill import kill_after_first_row
    root_dir = Path(train_filter.__file__).resolve().parent
    root, data, _, _ = tiny_set
    epochs = 4
    cmd = [sys.executable, str(root_dir / "train_filter.py"),
           *_argv(tmp_path, data, "killed", "--crops", str(first_run[0] / "crops"),
                  "--epochs", str(epochs))]
    run = tmp_path / "runs" / "killed"
    done = kill_after_first_row(cmd, root_dir, run / "metrics.csv")
    assert not (run / "summary.json").exists()
    assert 1 <= len(done) < epochs
    # A kill between an epoch's row and its checkpoint's "recorded" mark (a loaded machine
    # hits it) leaves that row to be dropped and the epoch evaluated again on resume.
    last = json.loads((run / "checkpoints" / "last.json").read_text())
    kept = [e for e in done if e <= (last["epoch"] if last["recorded"] else last["epoch"] - 1)]
    res = subprocess.run([sys.executable, str(root_dir / "train_filter.py"), "--resume", str(run)],
                         cwd=root_dir, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [int(r["epoch"]) for r in runs.MetricsCSV(run / "metrics.csv").rows()] == \
        list(range(epochs))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == epochs - len(kept)
    assert "resumed from" in (run / "log.txt").read_text()
    assert (run / "filter.json").exists() and list(run.glob("args.resume-*.json"))


def test_validation_keeps_detection_crops_only(tiny_set):
    """--add-gt and --add-random crops train the filter but never choose its threshold."""
    root, data, oof, test = tiny_set
    args = train_filter.parse_args(_argv(root, data, "split", "--detections", str(oof),
                                         "--add-gt", "--add-random", "2"))
    crop_dir = root / "split_crops"
    train_filter.crop_folder.build_crop_folder(data, oof, None, crop_dir,
                                               train_filter._crop_options(args))
    rows, crops, labels, train_idx, val_idx = train_filter.split_crops(args, crop_dir)
    origins = np.array([r["origin"] for r in rows])
    assert len(val_idx) and set(origins[val_idx]) == {"det"}
    assert {"det", "gt", "random"} <= set(origins[train_idx])
    # the groups stay apart: a validation image gives no crop of any origin to training
    val_images = {rows[i]["image_id"] for i in val_idx}
    assert not val_images & {rows[i]["image_id"] for i in train_idx}
    # the detection crops alone decide the split: the same validation crops without extras
    plain_args = train_filter.parse_args(_argv(root, data, "split", "--detections", str(oof),
                                               "--add-random", "0"))
    plain_dir = root / "split_plain"
    train_filter.crop_folder.build_crop_folder(data, oof, None, plain_dir,
                                               train_filter._crop_options(plain_args))
    prow, _, _, ptrain, pval = train_filter.split_crops(plain_args, plain_dir)
    key = lambda r: (r["image_id"], r["x1"], r["y1"], r["x2"], r["y2"])  # noqa: E731
    assert [key(prow[i]) for i in pval] == [key(rows[i]) for i in val_idx]
    assert len(train_idx) == len(ptrain) + sum(origins[i] != "det" for i in train_idx)


def test_ema_model_is_the_weight_average(first_run, tiny_set):
    """With --ema-decay the filter validated and saved is the average, not the raw weights."""
    import mxnet as mx
    root, data, oof, test = tiny_set
    out = train_filter.main(train_filter.parse_args(
        _argv(root, data, "ema", "--crops", str(first_run[0] / "crops"), "--epochs", "1",
              "--ema-decay", "0.9")))
    ckpt = root / "runs" / "ema" / "checkpoints"
    assert out["best_epoch"] == 0  # one epoch: the best is the last
    best, shadow, raw = (mx.nd.load(str(ckpt / n)) for n in ("best.params", "last.ema",
                                                              "last.params"))
    assert set(best) == set(shadow) == set(raw)
    differs = 0
    for k in best:
        np.testing.assert_array_equal(best[k].asnumpy(), shadow[k].asnumpy(), err_msg=k)
        differs += not np.array_equal(best[k].asnumpy(), raw[k].asnumpy())
    assert differs > len(best) // 2


def test_split_without_detections_falls_back_to_every_crop(tiny_set, caplog):
    """A detector that found nothing (the tiny demo's one epoch): the ground-truth and random
    crops still split and train; validation holds no crop, and the run says why."""
    from eval.detection_io import write_detections_json
    root, data, oof, test = tiny_set
    empty = root / "empty.json"
    write_detections_json(empty, {}, ["lesion"])
    args = train_filter.parse_args(_argv(root, data, "empty", "--detections", str(empty),
                                         "--add-gt"))
    crop_dir = root / "empty_crops"
    train_filter.crop_folder.build_crop_folder(data, empty, None, crop_dir,
                                               train_filter._crop_options(args))
    with caplog.at_level("WARNING", logger="train_filter"):
        rows, crops, labels, train_idx, val_idx = train_filter.split_crops(args, crop_dir)
    assert len(val_idx) == 0 and 0 < len(train_idx) < len(rows)
    assert "splitting all crops" in caplog.text


@pytest.mark.parametrize("val_frac", [0.0, 1.0, -0.2])
def test_val_frac_outside_the_unit_interval_is_refused(val_frac, tiny_set, first_run):
    root, data, oof, test = tiny_set
    with pytest.raises(ValueError, match="--val-frac must be in"):
        fd.group_split(np.array([1, -1] * 5), np.arange(10).astype(str), val_frac)
    args = train_filter.parse_args(_argv(root, data, "vf", "--detections", str(oof)))
    args.val_frac = val_frac
    with pytest.raises(ValueError, match="--val-frac must be in"):
        train_filter.split_crops(args, first_run[0] / "crops")


def test_a_budget_cut_anneals_the_lr_by_the_new_end_and_survives_resume(first_run, tiny_set,
                                                                        monkeypatch):
    """--time-budget: when the epochs run slower than planned, the count is cut after an
    epoch (here forced to 2), the LR schedule is rebuilt for the cut count, so the last epoch
    ends at the annealed LR, and the cut is recorded, so a resumed run does not train on."""
    from models import schedules
    root, data, oof, test = tiny_set
    crops = str(first_run[0] / "crops")
    monkeypatch.setattr(train_filter.budget, "epochs_within",
                        lambda deadline, now, done, total, seconds: min(total, 2))
    args = train_filter.parse_args(_argv(root, data, "cut", "--crops", crops,
                                         "--time-budget", "3", "--lr-mode", "cosine"))
    out = train_filter.main(args)
    run_dir = root / "runs" / "cut"
    derived = json.loads((run_dir / "args.json").read_text())["derived"]
    plan, iters = derived["time_budget"], derived["iters_per_epoch"]
    assert plan["epochs"] > 2 and plan["epochs_cut_to"] == 2 and out["epochs_run"] == 2
    rows = runs.MetricsCSV(run_dir / "metrics.csv").rows()
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    kw = schedules.schedule_kwargs(args)
    cut = schedules.build_schedule(**kw, iters_per_epoch=iters, epochs=2)
    planned = schedules.build_schedule(**kw, iters_per_epoch=iters, epochs=plan["epochs"])
    # the LR after each epoch's last update: the planned schedule's after the first (the cut
    # comes after it), the cut schedule's after the second
    assert float(rows[0]["lr"]) == pytest.approx(planned(iters), rel=1e-5)
    assert float(rows[1]["lr"]) == pytest.approx(cut(2 * iters), rel=1e-5)
    assert cut(2 * iters) < 0.1 * planned(2 * iters)
    monkeypatch.undo()
    again = train_filter.main(train_filter.parse_args(
        ["--data", str(data), "--crops", crops, "--resume", str(run_dir)]))
    assert again["epochs_run"] == 0
    assert [int(r["epoch"]) for r in runs.MetricsCSV(run_dir / "metrics.csv").rows()] == [0, 1]
