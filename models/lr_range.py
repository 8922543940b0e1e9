"""Learning-rate range test (notes 000 "如何设置初始学习率"; Smith 2015, section 3.3).

Train with a learning rate that grows exponentially from ``min_lr`` to ``max_lr``, one step
per value, record the loss, and stop once it diverges. ``step_fn(lr) -> loss`` hides the
model, so the same function drives the detector, the filter, or a numpy toy in a test.
The loss is smoothed with a bias-corrected exponential moving average and the run stops
when the smoothed loss exceeds ``diverge_factor`` times its best (fast.ai's ``lr_find``).
"""
import csv
import io
import logging
import math

import numpy as np

from infra.atomic import atomic_write_text

log = logging.getLogger(__name__)


def lr_range_test(step_fn, min_lr=1e-6, max_lr=1.0, num_iters=100, beta=0.98,
                  diverge_factor=4.0):
    """Run the LR range test.

    Parameters
    ----------
    step_fn : callable
        ``step_fn(lr) -> float``: one training step at learning rate ``lr`` (continuing
        from the previous step's weights), returning that batch's loss (assumed > 0).
    min_lr, max_lr : float
        First and last learning rate; ``0 < min_lr < max_lr``.
    num_iters : int
        Number of steps (>= 2) if the loss never diverges; ``lr_i = min_lr *
        (max_lr / min_lr) ** (i / (num_iters - 1))``.
    beta : float
        EMA factor of the smoothed loss, ``0 <= beta < 1``.
    diverge_factor : float
        Stop when the smoothed loss exceeds this multiple of the best smoothed loss so far,
        or when the loss is not finite.

    Returns
    -------
    dict
        ``lrs``, ``losses``, ``smoothed`` (lists of floats, one per step run; the smoothed
        loss of a non-finite step is nan); ``suggested_max_lr`` (the steepest-descent LR,
        see the comment in the code; None if no finite loss); ``suggested_base_lr``
        (``suggested_max_lr / 4``, notes 000 for CLR); ``min_loss_lr`` (LR of the smallest
        smoothed loss); ``steepest_lr`` (LR where the smoothed loss falls fastest over
        log LR, None if it never falls); ``stopped_early`` (bool); ``stop_reason``
        (str or None).
    """
    if not (0 < min_lr < max_lr and math.isfinite(max_lr)):
        raise ValueError(f"LR range test needs 0 < min_lr < max_lr, got min_lr={min_lr}, "
                         f"max_lr={max_lr}")
    if int(num_iters) < 2:
        raise ValueError(f"LR range test needs num_iters >= 2, got {num_iters}")
    if not 0 <= beta < 1:
        raise ValueError(f"LR range test needs 0 <= beta < 1, got {beta}")
    if not diverge_factor > 1:
        raise ValueError(f"LR range test needs diverge_factor > 1, got {diverge_factor}")
    num_iters = int(num_iters)
    schedule = min_lr * (max_lr / min_lr) ** (np.arange(num_iters) / (num_iters - 1))
    lrs, losses, smoothed, stop_reason = _sweep(step_fn, schedule, beta, diverge_factor)
    result = {"lrs": lrs, "losses": losses, "smoothed": smoothed,
              "stopped_early": stop_reason is not None, "stop_reason": stop_reason}
    result.update(suggest(lrs, smoothed, stop_reason))
    return result


def _sweep(step_fn, schedule, beta, diverge_factor):
    """One step per LR of ``schedule`` until the smoothed loss diverges; returns the LRs,
    losses and smoothed losses of the steps run and why it stopped (None: it did not)."""
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    for i, lr in enumerate(schedule):
        lr = float(lr)
        loss = float(step_fn(lr))
        lrs.append(lr)
        losses.append(loss)
        if not math.isfinite(loss):
            smoothed.append(math.nan)
            return lrs, losses, smoothed, f"non-finite loss {loss} at lr={lr:.3g} (step {i})"
        avg = beta * avg + (1 - beta) * loss
        value = avg / (1 - beta ** (i + 1))  # bias correction: the EMA starts at 0
        smoothed.append(value)
        if i > 0 and value > diverge_factor * best:
            return lrs, losses, smoothed, (f"smoothed loss {value:.4g} > {diverge_factor} x "
                                           f"best {best:.4g} at lr={lr:.3g} (step {i})")
        best = min(best, value)
    return lrs, losses, smoothed, None


def suggest(lrs, smoothed, stop_reason=None):
    """The suggestions of a sweep: ``min_loss_lr``, ``steepest_lr``, ``suggested_max_lr``,
    ``suggested_base_lr`` (None each when no step gave a usable loss; see
    :func:`lr_range_test`). The step that diverged (``stop_reason``) is no candidate."""
    out = {"min_loss_lr": None, "steepest_lr": None,
           "suggested_max_lr": None, "suggested_base_lr": None}
    sm = np.asarray(smoothed, dtype=np.float64)
    finite = np.isfinite(sm)
    if stop_reason is not None:
        finite[-1] = False
    if not finite.any():
        log.warning("LR range test: no usable loss (%s); no suggestion", stop_reason)
        return out
    idx = np.flatnonzero(finite)
    i_min = idx[np.argmin(sm[idx])]
    out["min_loss_lr"] = lrs[i_min]
    head = idx[idx <= i_min]
    slope = (np.gradient(sm[head], np.log(np.asarray(lrs)[head])) if len(head) >= 2
             else np.zeros(1))
    # Suggested max LR = LR of the steepest fall of the smoothed loss (fast.ai v1's
    # "minimum numerical gradient"). Notes 000 take max_lr where the loss stops improving
    # (accuracy stops rising) and base_lr = max_lr / 3..1/4. On the EMA-smoothed curve
    # that minimum lags: beta=0.98 remembers ~50 steps, which is ~3 decades of LR in a
    # 100-step sweep, so the smoothed minimum lands past the divergence LR and how far
    # depends on the sweep's width. On GD for a*w^2/2 + c (tests/test_lr_range.py) the
    # smoothed-minimum LR / 10 moved from 0.5x to 4x the divergence LR 2/a as max_lr
    # went from 10/a to 1000/a, while the steepest-descent LR stayed at 0.12-0.18x.
    # Fallback when the smoothed loss never fell: min-loss LR / 10 (fast.ai's rule).
    if slope.min() < 0:
        out["steepest_lr"] = lrs[head[int(np.argmin(slope))]]
        out["suggested_max_lr"] = out["steepest_lr"]
    else:
        log.warning("LR range test: the smoothed loss never fell; suggesting min-loss lr / 10")
        out["suggested_max_lr"] = lrs[i_min] / 10.0
    out["suggested_base_lr"] = out["suggested_max_lr"] / 4.0
    log.info("LR range test: %d steps, %s; min-loss lr %.3g, steepest %s, suggest max_lr "
             "%.3g base_lr %.3g", len(lrs), stop_reason or "no divergence", lrs[i_min],
             "n/a" if out["steepest_lr"] is None else f"{out['steepest_lr']:.3g}",
             out["suggested_max_lr"], out["suggested_base_lr"])
    return out


def write_lr_range_csv(path, result):
    """Write ``iteration,lr,loss,smoothed`` rows of an ``lr_range_test`` result atomically.

    Parameters
    ----------
    path : str or pathlib.Path
    result : dict
        Output of ``lr_range_test``.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["iteration", "lr", "loss", "smoothed"])
    for i, (lr, loss, sm) in enumerate(zip(result["lrs"], result["losses"], result["smoothed"])):
        w.writerow([i, repr(float(lr)), repr(float(loss)), repr(float(sm))])
    atomic_write_text(path, buf.getvalue())
