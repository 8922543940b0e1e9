"""models/ema.py: the weight average against the closed form, swap in/out, save/load."""
import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from models.ema import ModelEMA, tau_for


def _net():
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(4, in_units=3), gluon.nn.BatchNorm(in_channels=4))
    net.initialize(mx.init.Normal(1.0))
    net(mx.nd.ones((2, 3)))
    return net


def _weights(net):
    return {n: p.data().asnumpy().copy() for n, p in net._collect_params_with_prefix().items()}


def test_average_follows_the_ramped_decay_formula():
    net = _net()
    ema = ModelEMA(net, decay=0.9, tau=3.0)
    rng = np.random.RandomState(0)
    want = _weights(net)
    for n in range(1, 8):
        for name, p in net._collect_params_with_prefix().items():
            p.set_data(mx.nd.array(rng.normal(size=p.shape)))
        ema.update()
        d = 0.9 * (1 - math.exp(-n / 3.0))
        now = _weights(net)
        want = {k: d * want[k] + (1 - d) * now[k] for k in want}
    with ema.applied():
        got = _weights(net)
    for k in want:  # BatchNorm running statistics are averaged too
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_applied_restores_the_raw_weights():
    net = _net()
    ema = ModelEMA(net, decay=0.5, tau=1.0)
    for p in net.collect_params().values():
        p.set_data(p.data() + 1)
    ema.update()
    raw = _weights(net)
    with ema.applied():
        assert any(not np.allclose(v, raw[k]) for k, v in _weights(net).items())
    for k, v in _weights(net).items():
        np.testing.assert_array_equal(v, raw[k])


def test_save_load_round_trip(tmp_path):
    net = _net()
    ema = ModelEMA(net, decay=0.9, tau=2.0)
    for p in net.collect_params().values():
        p.set_data(p.data() * 2)
    ema.update()
    ema.save(tmp_path / "e.params")
    other_net = _net()  # another process's net: other prefixes, same structure
    other = ModelEMA(other_net, decay=0.9, tau=2.0)
    other.load(tmp_path / "e.params", ema.updates)
    assert other.updates == ema.updates
    with ema.applied():
        want = _weights(net)
    with other.applied():
        got = _weights(other_net)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(_net(), decay=1.0)
    with pytest.raises(ValueError, match="tau"):
        ModelEMA(_net(), tau=0)


def test_tau_for_short_and_long_runs():
    assert tau_for(500) == 50
    assert tau_for(10 ** 6) == 2000
    assert tau_for(3) == 1


def test_auto_decay_averages_over_a_twentieth_of_the_run():
    from models.ema import ema_decay_for
    for updates in (800, 3000, 20000):
        assert 1.0 / (1.0 - ema_decay_for(updates)) == pytest.approx(0.05 * updates)
    assert ema_decay_for(20) == 0.9 and ema_decay_for(10 ** 7) == 0.9999
