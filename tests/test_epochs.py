"""Shared epoch loop: resume after a crash gives one CSV row per epoch and the same weights."""
import argparse

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
    run, net, trainer, x, y, loss_fn = _setup(tmp_path, name, resume)

    def train_epoch(epoch):
        if crash_at is not None and epoch == crash_at:
            raise Crash()
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])
        return {"loss": float(loss.mean().asscalar())}

    def validate(epoch):
        return {"val_loss": float(loss_fn(net(x), y).mean().asscalar())}

    out = epoch_loop.fit(run, net, trainer, epochs, train_epoch, validate, "val_loss",
                         resume=resume is not None, mode="min")
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
