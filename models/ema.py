"""Exponential moving average of a Gluon net's weights (Ultralytics' ModelEMA for MXNet).

Training from scratch for a few hundred iterations leaves the raw weights noisy from step to
step, and with them the validation mAP and the scores the threshold is chosen on. The
average of recent weights is smoother and usually better (Polyak averaging; Ultralytics
validates and saves the EMA model only). As in ``utils/torch_utils.py ModelEMA`` the decay
ramps up, ``d(n) = decay * (1 - exp(-n / tau))`` after ``n`` updates, so early weights are
forgotten quickly; every floating-point parameter is averaged, BatchNorm running statistics
included, Constants (anchors, offsets) are left alone.
"""
import contextlib
import math

import mxnet as mx
import numpy as np


class ModelEMA:
    """Shadow copy of ``net``'s parameters, updated after each optimiser step.

    Parameters
    ----------
    net : gluon.Block
        Initialised (shapes known).
    decay : float
        Largest decay, in (0, 1).
    tau : float
        Ramp of the decay in updates; Ultralytics uses 2000 for runs of ~10^5 updates. A
        short CPU run wants a ramp that ends well before its last update (``tau_for``).
    updates : int
        Updates already made (a resumed run).
    """

    def __init__(self, net, decay=0.999, tau=2000.0, updates=0):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        if tau <= 0:
            raise ValueError(f"EMA tau must be > 0 updates, got {tau}")
        self.decay, self.tau, self.updates = float(decay), float(tau), int(updates)
        # Structural names (as save_parameters uses): stable across processes, unlike p.name.
        named = net._collect_params_with_prefix()
        self._params = {n: p for n, p in sorted(named.items())
                        if not isinstance(p, mx.gluon.Constant)
                        and np.dtype(p.dtype).kind == "f"}
        self._shadow = {n: p.data(p.list_ctx()[0]).copy() for n, p in self._params.items()}

    def current_decay(self):
        return self.decay * (1.0 - math.exp(-self.updates / self.tau))

    def update(self):
        """Blend the net's current weights into the average (call after ``trainer.step``)."""
        self.updates += 1
        d = self.current_decay()
        for n, p in self._params.items():
            s = self._shadow[n]
            s *= d
            s += (1.0 - d) * p.data(p.list_ctx()[0])

    @contextlib.contextmanager
    def applied(self):
        """Run the block with the averaged weights in the net; the raw ones come back after."""
        raw = {n: p.data(p.list_ctx()[0]).copy() for n, p in self._params.items()}
        self._load(self._shadow)
        try:
            yield
        finally:
            self._load(raw)

    def _load(self, values):
        # In place on every device copy: Parameter.set_data is refused for parameters a dist
        # kvstore updates (update_on_kvstore), and the swap is local and temporary anyway.
        for n, p in self._params.items():
            for arr in p.list_data():
                arr[:] = values[n].as_in_context(arr.context)

    def save(self, path):
        """The average as an ``mx.nd.save`` dict (names are the net's parameter names)."""
        mx.nd.save(str(path), dict(self._shadow))

    def load(self, path, updates):
        stored = mx.nd.load(str(path))
        missing = [n for n in self._params if n not in stored]
        if missing:
            raise ValueError(f"{path}: EMA file lacks {len(missing)} parameter(s), e.g. "
                             f"{missing[:3]}; it was saved from another network")
        for n, s in self._shadow.items():
            s[:] = stored[n].as_in_context(s.context)
        self.updates = int(updates)


def tau_for(total_updates, fraction=0.1, cap=2000.0):
    """Decay ramp for a run of ``total_updates``: ``fraction`` of it, at most ``cap``
    (Ultralytics' 2000), at least 1."""
    return max(1.0, min(cap, fraction * float(total_updates)))


def ema_decay_for(total_updates, window_fraction=0.05):
    """A decay whose averaging window (``1 / (1 - decay)`` updates) is ``window_fraction`` of
    the run, within [0.9, 0.9999]."""
    window = max(10.0, window_fraction * float(total_updates))
    return min(0.9999, max(0.9, 1.0 - 1.0 / window))


def decay_option(text):
    """argparse type of ``--ema-decay``: 'auto', 0 (off) or a decay in (0, 1)."""
    import argparse
    if str(text) == "auto":
        return "auto"
    value = float(text)
    if not (value == 0 or 0 < value < 1):
        raise argparse.ArgumentTypeError(f"want 'auto', 0 (off) or a decay in (0, 1), "
                                         f"got {text}")
    return value


def add_decay_argument(group, saved, why_off):
    """Declare ``--ema-decay`` (off by default) in ``group``: ``saved`` names the model
    validated and saved, ``why_off`` the measurement that left it off."""
    group.add_argument("--ema-decay", type=decay_option, default=0.0,
                       help=f"weight average for validation and the saved {saved} "
                            "(models/ema.py, Ultralytics' ModelEMA): a decay in (0, 1), "
                            "'auto' (an averaging window of 5%% of the run's updates; "
                            "Ultralytics' 0.9999 is for runs of 10^5 updates) or 0 = off. "
                            f"Off by default: {why_off} (default: %(default)s)")


def for_run(net, decay, total_updates):
    """The weight average of a run of ``total_updates`` updates by ``--ema-decay``: None when
    ``decay`` is 0, :func:`ema_decay_for` the run's length when 'auto'."""
    if not decay:
        return None
    decay = ema_decay_for(total_updates) if decay == "auto" else decay
    return ModelEMA(net, decay, tau_for(total_updates))


def averaged(ema):
    """``ema.applied()``, or nothing to do without a weight average (``ema`` None)."""
    return ema.applied() if ema is not None else contextlib.nullcontext()
