"""Shared epoch loop: resume after a crash gives one CSV row per epoch and the same weights."""
import argparse
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from infra import runs
from models import epochs as epoch_loop


class Crash(Exception):
    pass


def _setup(tmp_path, name, resume=None):
    p = argparse.ArgumentParser()
    runs.add_run_arguments(p, "unit")
    argv = ["--out", str(tmp_path), "--name", name] + (["--resume", str(resume)] if resume else [])
    run = runs.start("unit", p.parse_args(argv))
    mx.random.seed(0)
    net = gluon.nn.Dense(1, in_units=3)
    net.initialize(mx.init.Constant(0.1))
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    rng = np.random.RandomState(0)
    x = mx.nd.array(rng.randn(16, 3))
    y = mx.nd.array(x.asnumpy() @ np.array([1.0, -2.0, 0.5]))[:, None]
    loss_fn = gluon.loss.L2Loss()
    return run, net, trainer, x, y, loss_fn


def _train(tmp_path, name, crash_at=None, resume=None, epochs=5):
    run, net, out, _, _ = _fit(tmp_path, name, epochs, resume, crash_in_training=crash_at)
    return run, net, out


def test_resume_after_crash_matches_uninterrupted(tmp_path):
    ref_run, ref_net, ref = _train(tmp_path, "ref")
    with pytest.raises(Crash):
        _train(tmp_path, "crashy", crash_at=3)
    crashed_dir = tmp_path / "crashy"
    assert [int(r["epoch"]) for r in runs.MetricsCSV(crashed_dir / "metrics.csv").rows()] == [0, 1, 2]
    run, net, out = _train(tmp_path, "ignored", resume=crashed_dir)
    assert out["epochs_run"] == 2
    rows = run.metrics.rows()
    assert [int(r["epoch"]) for r in rows] == list(range(5))
    # momentum restored from last.states: the resumed weights equal the uninterrupted ones
    np.testing.assert_allclose(net.weight.data().asnumpy(), ref_net.weight.data().asnumpy(),
                               rtol=1e-6)
    assert out["best_epoch"] == ref["best_epoch"]
    assert (crashed_dir / "checkpoints" / "best.params").exists()


def test_rows_newer_than_checkpoint_are_dropped(tmp_path):
    run, _, _ = _train(tmp_path, "r", epochs=2)
    # a row written after the last checkpoint (killed between append and save_last)
    run.metrics.append({"epoch": 2, "loss": 9.0})
    run2, _, out = _train(tmp_path, "x", resume=run.dir, epochs=3)
    assert [int(r["epoch"]) for r in run2.metrics.rows()] == [0, 1, 2]
    assert float(run2.metrics.rows()[2]["loss"]) != 9.0


def _fit(tmp_path, name, epochs=4, resume=None, crash_in_validation=None, metric="val_loss",
         nan_metric=False, diverge_at=None, diverged_ok=False, crash_in_training=None, keep=1,
         values=None, replan=None, val_interval=1):
    """fit() on the linear model, recording which epochs were trained and validated."""
    run, net, trainer, x, y, loss_fn = _setup(tmp_path, name, resume)
    trained, validated = [], []

    def train_epoch(epoch):
        if crash_in_training == epoch:
            raise Crash()
        if diverge_at == epoch:
            raise FloatingPointError(f"non-finite loss at epoch {epoch}")
        trained.append(epoch)
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])
        return {"loss": float(loss.mean().asscalar())}

    def validate(epoch):
        if crash_in_validation == epoch:
            raise Crash()
        validated.append(epoch)
        value = float("nan") if nan_metric else float(loss_fn(net(x), y).mean().asscalar())
        if values is not None:  # a validation curve that goes up and down, like the filter's
            value = values[epoch]
        return {"val_loss": value}

    out = epoch_loop.fit(run, net, trainer, epochs, train_epoch, validate, metric,
                         resume=resume is not None, mode="min", diverged_ok=diverged_ok,
                         keep=keep, replan=replan, val_interval=val_interval)
    return run, net, out, trained, validated


def test_a_run_stopped_in_validation_evaluates_the_saved_epoch_again(tmp_path):
    """STYLE 5: last is saved before evaluating, so the trained epoch survives a failed
    evaluation; the resume validates it again (no retraining) and writes its one row."""
    _, ref_net, ref, _, _ = _fit(tmp_path, "ref")
    with pytest.raises(Crash):
        _fit(tmp_path, "crashy", crash_in_validation=2)
    crashed = tmp_path / "crashy"
    assert [int(r["epoch"]) for r in runs.MetricsCSV(crashed / "metrics.csv").rows()] == [0, 1]
    state = json.loads((crashed / "checkpoints" / "last.json").read_text())
    assert (state["epoch"], state["recorded"]) == (2, False) and "loss" in state["row"]
    run, net, out, trained, validated = _fit(tmp_path, "x", resume=crashed)
    assert (trained, validated, out["epochs_run"]) == ([3], [2, 3], 2)
    rows = run.metrics.rows()
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    ref_rows = runs.MetricsCSV(tmp_path / "ref" / "metrics.csv").rows()
    for a, b in zip(rows, ref_rows):
        assert (a["loss"], a["val_loss"]) == (b["loss"], b["val_loss"])
    np.testing.assert_array_equal(net.weight.data().asnumpy(), ref_net.weight.data().asnumpy())
    assert (out["best_epoch"], out["best_metric"]) == (ref["best_epoch"], ref["best_metric"])
    state = json.loads((crashed / "checkpoints" / "last.json").read_text())
    assert state["recorded"] and "row" not in state


def test_a_row_written_before_the_pointer_moved_is_not_doubled(tmp_path):
    run, _, _, _, _ = _fit(tmp_path, "r", epochs=2)
    ckpt = run.dir / "checkpoints" / "last.json"
    state = json.loads(ckpt.read_text())
    # Killed after the row of epoch 1 and before its pointer said so.
    ckpt.write_text(json.dumps(dict(state, recorded=False, row={"epoch": 1, "loss": 5.0},
                                    train_seconds=0.0)))
    run2, _, out, trained, validated = _fit(tmp_path, "x", epochs=3, resume=run.dir)
    assert (trained, validated) == ([2], [1, 2])
    rows = run2.metrics.rows()
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2] and float(rows[1]["loss"]) == 5.0


def test_best_json_names_the_kept_epoch_and_the_model_follows_the_metric(tmp_path):
    run, _, out, _, _ = _fit(tmp_path, "best")
    best = json.loads((run.dir / "checkpoints" / "best.json").read_text())
    assert best == {"epoch": out["best_epoch"], "metric": "val_loss",
                    "value": out["best_metric"]}
    assert out["model"] == run.dir / "checkpoints" / "best.params"
    # undefined metric at every epoch: no best, the model is the last epoch
    run, _, out, _, _ = _fit(tmp_path, "nan", nan_metric=True)
    assert out["best_epoch"] == -1 and out["model"] == run.dir / "checkpoints" / "last.params"
    assert not (run.dir / "checkpoints" / "best.json").exists()
    # no metric: no selection on validation data, the model is the last epoch (model.params)
    run, net, out, _, _ = _fit(tmp_path, "none", metric=None)
    assert out["model"] == run.dir / "checkpoints" / "model.params"
    assert not (run.dir / "checkpoints" / "best.params").exists()
    saved = mx.nd.load(str(out["model"]))
    np.testing.assert_array_equal(saved["weight"].asnumpy(), net.weight.data().asnumpy())


def test_divergence_is_a_result_only_when_asked(tmp_path):
    with pytest.raises(FloatingPointError):
        _fit(tmp_path, "raise", diverge_at=2)
    run, _, out, trained, _ = _fit(tmp_path, "ok", diverge_at=2, diverged_ok=True)
    assert trained == [0, 1] and "non-finite" in out["diverged"] and out["model"] is None
    assert [int(r["epoch"]) for r in run.metrics.rows()] == [0, 1]


def _reference_top(values, keep, mode):
    """The obvious way: every (value, epoch) seen, sorted best first, earlier epoch on ties."""
    sign = 1.0 if mode == "min" else -1.0
    ranked = sorted(((sign * v, e) for e, v in enumerate(values) if not np.isnan(v)))
    return [e for _, e in ranked[:keep]]


@pytest.mark.parametrize("mode", ["max", "min"])
def test_save_top_keeps_the_best_epochs_and_only_their_files(tmp_path, mode):
    from models.checkpoint import Checkpointer
    ckpt = Checkpointer(tmp_path / "ckpt")
    net = gluon.nn.Dense(1, in_units=2)
    net.initialize()
    values = [0.5, 0.9, 0.7, 0.9, 0.6, 0.95, 0.7, 0.1]
    for epoch, v in enumerate(values):
        net.weight.set_data(mx.nd.full((1, 2), epoch))
        top = ckpt.save_top(net, epoch, v, keep=3, mode=mode)
        want = _reference_top(values[:epoch + 1], 3, mode)
        assert [t["epoch"] for t in top] == want
        assert json.loads(ckpt.top_json.read_text()) == top
        on_disk = sorted(f.name for f in ckpt.dir.glob("top_*.params"))
        assert on_disk == sorted(f"top_{e:03d}.params" for e in want)
    for t in top:  # each file holds the weights of its own epoch
        w = mx.nd.load(str(ckpt.dir / t["params"]))["weight"].asnumpy()
        assert (w == t["epoch"]).all() and t["value"] == values[t["epoch"]]
    # An epoch validated again (a resumed run) replaces its own entry, never doubles it.
    again = ckpt.save_top(net, top[0]["epoch"], top[0]["value"], keep=3, mode=mode)
    assert again == top
    worse = 0.0 if mode == "max" else 1.0  # validated again with another value: re-ranked
    moved = ckpt.save_top(net, top[0]["epoch"], worse, keep=3, mode=mode)
    assert moved == top[1:] + [dict(top[0], value=worse)]
    assert json.loads(ckpt.top_json.read_text()) == moved


def test_fit_keeps_the_k_best_epochs_as_members(tmp_path):
    values = [0.9, 0.4, 0.7, 0.3, 0.8, 0.35]  # mode min: the best are 3, 5, 1
    run, _, out, _, _ = _fit(tmp_path, "top", epochs=6, keep=3, values=values)
    ckpt = run.dir / "checkpoints"
    assert out["member_epochs"] == _reference_top(values, 3, "min") == [3, 5, 1]
    assert out["members"] == [ckpt / f"top_{e:03d}.params" for e in (3, 5, 1)]
    assert out["best_epoch"] == 3
    # the best member is the best epoch: the same weights as best.params
    best, first = mx.nd.load(str(ckpt / "best.params")), mx.nd.load(str(out["members"][0]))
    for k in best:
        np.testing.assert_array_equal(best[k].asnumpy(), first[k].asnumpy())
    # keep=1: the best epoch alone, no snapshot files
    run, _, out, _, _ = _fit(tmp_path, "one", epochs=6, values=values)
    assert out["members"] == [run.dir / "checkpoints" / "best.params"]
    assert out["member_epochs"] == [3] and not list(run.dir.glob("checkpoints/top*"))


def test_snapshots_survive_a_run_stopped_in_validation(tmp_path):
    values = [0.9, 0.4, 0.7, 0.3, 0.8, 0.35]
    _, _, ref, _, _ = _fit(tmp_path, "ref", epochs=6, keep=3, values=values)
    with pytest.raises(Crash):
        _fit(tmp_path, "crashy", epochs=6, keep=3, values=values, crash_in_validation=4)
    crashed = tmp_path / "crashy"
    _, _, out, _, _ = _fit(tmp_path, "x", epochs=6, keep=3, values=values, resume=crashed)
    assert out["member_epochs"] == ref["member_epochs"]
    for a, b in zip(out["members"], ref["members"]):
        wa, wb = mx.nd.load(str(a)), mx.nd.load(str(b))
        for k in wa:
            np.testing.assert_array_equal(wa[k].asnumpy(), wb[k].asnumpy())
    assert sorted(f.name for f in (crashed / "checkpoints").glob("top_*.params")) == \
        sorted(m.name for m in ref["members"])


def test_replan_cuts_the_run_after_the_epoch_it_returns(tmp_path):
    """A time budget's cut: the epochs after it never run, the last one kept is validated
    and the model follows; the replan sees each recorded epoch with its wall seconds."""
    seen = []

    def replan(done, total, seconds):
        seen.append((done, total, seconds >= 0))
        return 3 if done == 2 else total

    run, _, out, trained, validated = _fit(tmp_path, "cut", epochs=6, replan=replan)
    assert trained == validated == [0, 1, 2]
    assert [int(r["epoch"]) for r in run.metrics.rows()] == [0, 1, 2]
    assert seen == [(1, 6, True), (2, 6, True), (3, 3, True)]
    assert out["epochs_run"] == 3 and out["model"] is not None
    steady, _, out2, trained2, _ = _fit(tmp_path, "steady", epochs=4,
                                        replan=lambda done, total, s: total)
    assert trained2 == [0, 1, 2, 3] and out2["epochs_run"] == 4


@pytest.mark.parametrize("bad", [0, 1])
def test_replan_below_the_epochs_run_is_an_error(tmp_path, bad):
    with pytest.raises(ValueError, match="replan gave"):
        _fit(tmp_path, f"bad{bad}", epochs=6,
             replan=lambda done, total, s: bad if done == 2 else total)


def test_replan_raises_the_run_after_the_epoch_it_returns(tmp_path):
    """A time budget's raise (the first job of a plan that under-read its machine): the
    epochs after it run, up to the new total, and the last of them is validated."""
    run, _, out, trained, validated = _fit(
        tmp_path, "raised", epochs=3, val_interval=100,
        replan=lambda done, total, s: 5 if done == 1 else total)
    assert trained == [0, 1, 2, 3, 4] and validated == [4]
    assert out["epochs"] == 5 and out["epochs_run"] == 5
