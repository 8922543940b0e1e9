"""Learning-rate schedules for both trainers, evaluated per iteration.

Every schedule is an ``mx.lr_scheduler.LRScheduler`` subclass defined here, at module
level, because under ``dist_sync`` with ``update_on_kvstore=True`` the optimizer and its
scheduler are pickled to the kvstore servers, which can only unpickle classes from an
importable module (MXNET_TRAPS 36). They are written in closed form rather than on top
of ``gluoncv.utils.LRScheduler``/``LRSequential``: GluonCV's divides by ``niters - 1`` and
raises ZeroDivisionError with one iteration per epoch or a one-iteration warm-up
(MXNET_TRAPS 20), and it has no cyclical modes. ``tests/test_schedules.py`` checks that
``step`` and ``cosine`` agree with GluonCV wherever GluonCV works.

Iteration convention: MXNet's ``Optimizer`` increments ``num_update`` *before* asking the
scheduler, so the first update calls ``sched(1)``. Here iteration ``it = num_update - 1``
(0-based, clamped at 0), so epoch ``e`` covers iterations ``[e*ipe, (e+1)*ipe)`` and a
step decay at epoch ``e`` applies from the first batch of that epoch on.

Modes (notes 002 "学习率策略", notes 000 "学习率衰减" and "Cyclical Learning Rates"):
``constant``, ``step`` (× factor every P epochs), ``multistep`` (× factor at each
milestone epoch), ``exp`` (× gamma per epoch, continuous in the iteration), ``cosine``
(to ``min_lr``), and the cyclical ``triangular``, ``triangular2``, ``exp_range``.
Each has an optional linear warm-up from ``warmup_lr`` to the schedule's value at the
end of warm-up. Milestones of step/multistep are absolute epochs (as in GluonCV's
train_yolo3.py); the shape modes (exp, cosine, cyclical) start when warm-up ends.
"""
import logging
import math

import mxnet as mx
# Explicit submodule import: a dist kvstore server unpickles this module inside `import
# mxnet`, before mxnet/__init__ has bound mx.lr_scheduler (MXNET_TRAPS 36).
from mxnet.lr_scheduler import LRScheduler  # noqa: E402
import numpy as np

log = logging.getLogger(__name__)

MODES = ("constant", "step", "multistep", "exp", "cosine",
         "triangular", "triangular2", "exp_range")
CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


class WarmupSchedule(LRScheduler):
    """Base class: linear warm-up, then ``main_lr(it)``.

    Parameters
    ----------
    start_lr : float
        The schedule's nominal learning rate (stored as ``base_lr`` too, so that an
        ``Optimizer`` created with the same ``learning_rate`` does not warn). The value
        MXNet's ``Optimizer`` may write into ``base_lr`` is ignored: the schedule's own
        parameters define it.
    warmup_iters : int
        Iterations of linear warm-up (0 = none).
    warmup_lr : float
        Learning rate at iteration 0 of the warm-up.
    """

    def __init__(self, start_lr, warmup_iters=0, warmup_lr=0.0):
        super().__init__(base_lr=start_lr)
        self.start_lr = float(start_lr)
        self.warmup_iters = int(warmup_iters)
        self.warmup_lr = float(warmup_lr)

    def main_lr(self, it):
        """Learning rate at 0-based iteration ``it >= warmup_iters`` (no warm-up)."""
        raise NotImplementedError

    def lr_at(self, it):
        """Learning rate of the update with 0-based index ``it``."""
        it = max(int(it), 0)
        if it < self.warmup_iters:
            target = self.main_lr(self.warmup_iters)
            return self.warmup_lr + (target - self.warmup_lr) * it / self.warmup_iters
        return self.main_lr(it)

    def __call__(self, num_update):
        # num_update is MXNet's 1-based update count (see module docstring).
        return self.lr_at(num_update - 1)

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in sorted(vars(self).items()))
        return f"{type(self).__name__}({fields})"


class ConstantSchedule(WarmupSchedule):
    """``start_lr`` after warm-up."""

    def main_lr(self, it):
        return self.start_lr


class StepSchedule(WarmupSchedule):
    """``start_lr * factor ** (number of milestones <= it)``; milestones in iterations."""

    def __init__(self, start_lr, milestones_iters, factor, warmup_iters=0, warmup_lr=0.0):
        super().__init__(start_lr, warmup_iters, warmup_lr)
        self.milestones_iters = [int(m) for m in milestones_iters]
        self.factor = float(factor)

    def main_lr(self, it):
        count = sum(1 for m in self.milestones_iters if m <= it)
        return self.start_lr * self.factor ** count


class ExponentialSchedule(WarmupSchedule):
    """``start_lr * gamma ** (epochs since warm-up)``, fractional epochs (notes 000: 0.95^epoch)."""

    def __init__(self, start_lr, gamma, iters_per_epoch, warmup_iters=0, warmup_lr=0.0):
        super().__init__(start_lr, warmup_iters, warmup_lr)
        self.gamma = float(gamma)
        self.iters_per_epoch = int(iters_per_epoch)

    def main_lr(self, it):
        return self.start_lr * self.gamma ** ((it - self.warmup_iters) / self.iters_per_epoch)


class CosineSchedule(WarmupSchedule):
    """Half cosine from ``start_lr`` (end of warm-up) to ``min_lr`` at ``total_iters``.

    ``lr = min + (start - min) * (1 + cos(pi * t / T)) / 2`` with ``t = it - warmup``,
    ``T = total_iters - warmup``; the last update (``t = T - 1``) is still above ``min_lr``
    (as PyTorch's CosineAnnealingLR with ``T_max = T``), and ``T >= 1`` always, so there
    is no division by zero.
    """

    def __init__(self, start_lr, total_iters, min_lr=0.0, warmup_iters=0, warmup_lr=0.0):
        super().__init__(start_lr, warmup_iters, warmup_lr)
        self.total_iters = int(total_iters)
        self.min_lr = float(min_lr)

    def main_lr(self, it):
        span = max(self.total_iters - self.warmup_iters, 1)
        t = min(it - self.warmup_iters, span)
        return self.min_lr + (self.start_lr - self.min_lr) * (1 + math.cos(math.pi * t / span)) / 2


class CyclicSchedule(WarmupSchedule):
    """Cyclical learning rate (Smith 2015; notes 000 "Cyclical Learning Rates").

    With ``t = it - warmup_iters``::

        cycle = floor(1 + t / (2 * step_size))
        x = abs(t / step_size - 2 * cycle + 1)
        lr = base_lr + (max_lr - base_lr) * max(0, 1 - x) * scale_fn

    ``scale_fn`` is 1 (triangular), ``1 / 2 ** (cycle - 1)`` (triangular2) or
    ``gamma ** t`` (exp_range; gamma per *iteration*, as the notes' γ^steps).
    """

    def __init__(self, mode, base_lr, max_lr, step_size_iters, gamma=1.0,
                 warmup_iters=0, warmup_lr=0.0):
        super().__init__(base_lr, warmup_iters, warmup_lr)
        if mode not in CYCLIC_MODES:
            raise ValueError(f"cyclical mode must be one of {CYCLIC_MODES}, got {mode!r}")
        self.mode = mode
        self.max_lr = float(max_lr)
        self.step_size_iters = int(step_size_iters)
        self.gamma = float(gamma)

    def main_lr(self, it):
        t = it - self.warmup_iters
        step = self.step_size_iters
        cycle = math.floor(1 + t / (2 * step))
        x = abs(t / step - 2 * cycle + 1)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1.0 / 2 ** (cycle - 1)
        else:
            scale = self.gamma ** t
        return self.start_lr + (self.max_lr - self.start_lr) * max(0.0, 1 - x) * scale


def _check_positive(name, value, allow_zero=False):
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        want = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {want}, got {value!r}")


def build_schedule(mode, base_lr, iters_per_epoch, epochs, warmup_epochs=0, warmup_lr=0.0,
                   step_epochs=(), step_factor=0.1, gamma=0.95, min_lr=0.0, max_lr=None,
                   step_size_iters=None):
    """Build a picklable per-iteration learning-rate schedule.

    Parameters
    ----------
    mode : str
        One of ``MODES``.
    base_lr : float
        Learning rate after warm-up; for the cyclical modes the lower bound of the cycle.
    iters_per_epoch : int
        Optimizer updates per epoch (>= 1; 1 is fine).
    epochs : int
        Total epochs of the run, warm-up included.
    warmup_epochs : float
        Linear warm-up length in epochs (rounded to whole iterations; 0 = none).
    warmup_lr : float
        Learning rate at the first warm-up iteration.
    step_epochs : sequence of float
        ``step``: one value, the period P in epochs (decay at P, 2P, ...);
        ``multistep``: increasing milestone epochs (absolute, warm-up included).
    step_factor : float
        Multiplier applied at each step/milestone.
    gamma : float
        ``exp``: multiplier per epoch; ``exp_range``: multiplier per iteration
        (notes 000, ``scale_fn = gamma ** iterations``; 0.999-0.99999 are typical).
    min_lr : float
        ``cosine``: learning rate reached at the end of the run.
    max_lr : float or None
        Cyclical modes: upper bound (default ``4 * base_lr``; the notes set
        base_lr to 1/3-1/4 of max_lr).
    step_size_iters : int or None
        Cyclical modes: half-cycle length in iterations (default ``4 * iters_per_epoch``;
        the notes advise 2-10 epochs' worth of iterations).

    Returns
    -------
    WarmupSchedule
        ``sched(num_update) -> lr`` with MXNet's 1-based ``num_update``;
        ``sched.lr_at(it)`` with the 0-based iteration.

    Raises
    ------
    ValueError
        Unknown mode (the message lists the choices) or inconsistent numbers.
    """
    if mode not in MODES:
        raise ValueError(f"unknown LR schedule mode {mode!r}; choose one of: {', '.join(MODES)}")
    iters_per_epoch, epochs = int(iters_per_epoch), int(epochs)
    if iters_per_epoch < 1:
        # 0 iterations would silently give a constant LR in GluonCV (MXNET_TRAPS 20).
        raise ValueError(f"iters_per_epoch must be >= 1, got {iters_per_epoch}: the training "
                         "set is smaller than one batch; lower the batch size")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    _check_positive("base_lr", float(base_lr))
    _check_positive("warmup_lr", float(warmup_lr), allow_zero=True)
    _check_positive("warmup_epochs", float(warmup_epochs), allow_zero=True)
    total = iters_per_epoch * epochs
    warmup_iters = int(round(float(warmup_epochs) * iters_per_epoch))
    if warmup_iters >= total:
        raise ValueError(f"warm-up of {warmup_epochs} epochs ({warmup_iters} iterations) leaves "
                         f"no iterations of the {epochs}-epoch run ({total} iterations); "
                         "shorten --warmup-epochs")
    warm = dict(warmup_iters=warmup_iters, warmup_lr=float(warmup_lr))
    if mode == "constant":
        return ConstantSchedule(base_lr, **warm)
    if mode in ("step", "multistep"):
        _check_positive("step_factor", float(step_factor))
        milestones = _milestones(mode, [float(s) for s in (step_epochs or ())],
                                 iters_per_epoch, epochs)
        return StepSchedule(base_lr, milestones, step_factor, **warm)
    if mode == "exp":
        _check_positive("gamma", float(gamma))
        return ExponentialSchedule(base_lr, gamma, iters_per_epoch, **warm)
    if mode == "cosine":
        _check_positive("min_lr", float(min_lr), allow_zero=True)
        if min_lr > base_lr:
            raise ValueError(f"min_lr ({min_lr}) must not exceed base_lr ({base_lr})")
        return CosineSchedule(base_lr, total, min_lr, **warm)
    return _cyclic(mode, base_lr, max_lr, step_size_iters, gamma, iters_per_epoch, total, warm)


def _milestones(mode, steps, iters_per_epoch, epochs):
    """Iterations at which ``step`` (period ``steps[0]`` epochs) or ``multistep`` (milestone
    epochs ``steps``) multiply the LR."""
    if not steps:
        raise ValueError(f"--lr-mode {mode} needs --lr-steps (epochs), got none")
    if mode == "step":
        if len(steps) != 1:
            raise ValueError(f"--lr-mode step decays every P epochs and takes one value in "
                             f"--lr-steps, got {steps}; for milestones use --lr-mode multistep")
        _check_positive("step period (epochs)", steps[0])
        period = max(int(round(steps[0] * iters_per_epoch)), 1)
        return list(range(period, iters_per_epoch * epochs, period))
    if any(s <= 0 for s in steps) or any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError("--lr-steps milestones must be positive and increasing, "
                         f"got {steps}")
    late = [s for s in steps if s >= epochs]
    if late:
        log.warning("LR milestones %s are at or after the last epoch (%d): no effect",
                    late, epochs)
    return [int(round(s * iters_per_epoch)) for s in steps]


def _cyclic(mode, base_lr, max_lr, step_size_iters, gamma, iters_per_epoch, total, warm):
    """The cyclical modes (triangular, triangular2, exp_range) of :func:`build_schedule`."""
    max_lr = 4.0 * float(base_lr) if max_lr is None else float(max_lr)
    if max_lr < base_lr:
        raise ValueError(f"cyclical LR needs max_lr >= base_lr, got max_lr={max_lr} "
                         f"< base_lr={base_lr}")
    step_size = 4 * iters_per_epoch if step_size_iters is None else int(step_size_iters)
    if step_size < 1:
        raise ValueError(f"step_size_iters must be >= 1, got {step_size_iters}")
    _check_positive("gamma", float(gamma))
    left = total - warm["warmup_iters"]
    if mode == "exp_range" and gamma ** left < 1e-3:
        log.warning("exp_range: gamma=%g per iteration shrinks the cycle amplitude to %.1e of "
                    "its start within the run (%d iterations); gamma is per iteration, "
                    "try %.6f", gamma, gamma ** left, left, 0.1 ** (1.0 / max(left, 1)))
    return CyclicSchedule(mode, base_lr, max_lr, step_size, gamma=gamma, **warm)


def _float_list(text):
    text = text.strip()
    if not text:
        return []
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--lr-steps wants comma-separated epochs such as '30,45', got {text!r}")


def add_schedule_arguments(parser):
    """Add the learning-rate option group shared by both trainers.

    Parameters
    ----------
    parser : argparse.ArgumentParser

    Returns
    -------
    argparse._ArgumentGroup
        The group (change defaults with ``parser.set_defaults``).
    """
    g = parser.add_argument_group("learning-rate schedule")
    g.add_argument("--lr", type=float, default=1e-3,
                   help="base learning rate (cyclical modes: lower bound) (default %(default)s)")
    g.add_argument("--lr-mode", default="cosine", choices=MODES,
                   help="schedule, per iteration (default %(default)s)")
    g.add_argument("--lr-steps", default="",
                   help="epochs, comma-separated: 'step' one period P (decay every P epochs), "
                        "'multistep' the milestones (default none)")
    g.add_argument("--lr-factor", type=float, default=0.1,
                   help="step/multistep multiplier per decay (default %(default)s)")
    g.add_argument("--lr-gamma", type=float, default=0.95,
                   help="'exp': multiplier per epoch; 'exp_range': per iteration "
                        "(default %(default)s)")
    g.add_argument("--min-lr", type=float, default=0.0,
                   help="'cosine': final learning rate (default %(default)s)")
    g.add_argument("--max-lr", type=float, default=None,
                   help="cyclical modes: upper bound (default 4 x --lr)")
    g.add_argument("--step-size-iters", type=int, default=None,
                   help="cyclical modes: half-cycle in iterations "
                        "(default 4 x iterations per epoch)")
    g.add_argument("--warmup-epochs", type=float, default=0.0,
                   help="linear warm-up length in epochs (default %(default)s)")
    g.add_argument("--warmup-lr", type=float, default=0.0,
                   help="learning rate at the start of warm-up (default %(default)s)")
    return g


def schedule_kwargs(args):
    """Keywords for ``build_schedule`` from parsed ``add_schedule_arguments`` options.

    ``build_schedule(**schedule_kwargs(args), iters_per_epoch=..., epochs=...)``.
    The result is JSON-serialisable (for args.json "derived").
    """
    steps = args.lr_steps
    steps = _float_list(steps) if isinstance(steps, str) else [float(s) for s in steps or ()]
    return {
        "mode": args.lr_mode, "base_lr": args.lr, "warmup_epochs": args.warmup_epochs,
        "warmup_lr": args.warmup_lr, "step_epochs": steps, "step_factor": args.lr_factor,
        "gamma": args.lr_gamma, "min_lr": args.min_lr, "max_lr": args.max_lr,
        "step_size_iters": args.step_size_iters,
    }


def schedule_curve(sched_kwargs, iters_per_epoch, epochs):
    """Learning rate of every update of a run, for plots.

    Parameters
    ----------
    sched_kwargs : dict
        ``build_schedule`` keywords without ``iters_per_epoch``/``epochs``.
    iters_per_epoch, epochs : int

    Returns
    -------
    np.ndarray
        float64, shape ``(iters_per_epoch * epochs,)``; element ``i`` is the LR of the
        0-based update ``i`` (``sched(i + 1)``).
    """
    sched = build_schedule(iters_per_epoch=iters_per_epoch, epochs=epochs, **sched_kwargs)
    total = int(iters_per_epoch) * int(epochs)
    return np.array([sched.lr_at(i) for i in range(total)], dtype=np.float64)
