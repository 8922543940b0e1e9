"""models/optim.py: the trainer factory against a gluon.Trainer built by hand (the filter's
former set-up, learning rate next to the schedule), step by step."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from models import optim, schedules


def _net():
    net = gluon.nn.Dense(2, in_units=3)
    net.initialize(mx.init.Constant(0.2))
    return net


def _train(net, trainer, steps=7):
    rng = np.random.RandomState(0)
    lrs = []
    for _ in range(steps):
        x = mx.nd.array(rng.randn(4, 3))
        with autograd.record():
            loss = (net(x) ** 2).mean()
        loss.backward()
        trainer.step(4)
        lrs.append(trainer.learning_rate)
    return net.weight.data().asnumpy(), lrs


def test_scheduled_trainer_equals_the_hand_built_one():
    kwargs = dict(mode="cosine", base_lr=0.05, warmup_epochs=1, warmup_lr=0.0, min_lr=0.001)
    net = _net()
    trainer, sched = optim.scheduled_trainer(net, kwargs, iters_per_epoch=2, epochs=4,
                                             optimizer="sgd", wd=1e-3, momentum=0.9,
                                             kvstore="local")
    got, lrs = _train(net, trainer)
    ref_net = _net()
    ref_sched = schedules.build_schedule(iters_per_epoch=2, epochs=4, **kwargs)
    ref = gluon.Trainer(ref_net.collect_params(), "sgd",
                        {"learning_rate": 0.05, "momentum": 0.9, "wd": 1e-3,
                         "lr_scheduler": ref_sched}, kvstore="local")
    want, ref_lrs = _train(ref_net, ref)
    np.testing.assert_array_equal(got, want)
    assert lrs == ref_lrs == [sched.lr_at(i) for i in range(7)]


def test_fixed_lr_and_adam():
    net = _net()
    trainer = optim.make_trainer(net, None, "local", learning_rate=0.01, optimizer="adam")
    assert trainer.learning_rate == 0.01 and type(trainer._optimizer).__name__ == "Adam"
    with pytest.raises(ValueError, match="sgd, adam"):
        optim.make_trainer(_net(), None, optimizer="rmsprop")
