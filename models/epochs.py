"""The epoch bookkeeping both trainers share: resume, one CSV row per epoch, last and best
checkpoints, the run's model, a diverged run as a result.

The training step and the validation stay in the scripts (the loop a reader came to see);
this module only decides where to start, what to record and what to keep.

Order within an epoch (STYLE.md section 5: "we save last before evaluating and best after",
as detectron2's hooks put the checkpointer before the evaluator, so a failed evaluation
leaves the trained epoch on disk):

1. train the epoch;
2. save the last checkpoint, its pointer marked ``recorded: false`` and holding the
   training half of the epoch's row;
3. validate; when the metric improves, save ``best.params`` and ``best.json``;
4. append the epoch's metrics.csv row;
5. mark the pointer ``recorded: true`` (and store the best so far).

A run stopped before 2 resumes at the epoch (trained again from the previous checkpoint);
stopped between 2 and 5 it resumes by validating the saved epoch again (same weights, same
numbers: the rows of that epoch or later are dropped first) and writing its row; after 5,
at the next epoch. Every epoch thus ends with exactly one row, and no finished training is
redone.
"""
import logging
import math
import time

from models.checkpoint import Checkpointer

log = logging.getLogger(__name__)


class _Best:
    """The best validation value so far and its epoch."""

    def __init__(self, metric, mode, value=None, epoch=-1):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.metric, self.mode, self.value, self.epoch = metric, mode, value, epoch

    def improves(self, val):
        """Whether ``val`` (the validation dict) beats the best so far (NaN never does)."""
        if self.metric is None:
            return False
        if self.metric not in val:
            raise KeyError(f"validate() returned {sorted(val)}, missing {self.metric!r}")
        v = val[self.metric]
        if not _defined(v):
            return False
        return self.value is None or (v > self.value if self.mode == "max" else v < self.value)


def fit(run, net, trainer, epochs, train_epoch, validate, metric=None, resume=False,
        mode="max", val_interval=1, extra_state=None, ema=None, diverged_ok=False, keep=1,
        replan=None):
    """Run epochs ``start .. epochs-1``, recording and checkpointing each.

    Parameters
    ----------
    run : infra.runs.Run
        Folder receiving metrics.csv and checkpoints/.
    net, trainer : gluon.Block, gluon.Trainer
        Restored from ``checkpoints/last.*`` when ``resume`` is true and a checkpoint exists.
    epochs : int
        Total number of epochs of the run (not the number still to run).
    train_epoch : callable(epoch) -> dict
        Trains one epoch; returns numbers for the CSV row (losses, lr, images_per_s...).
    validate : callable(epoch) -> dict
        Returns numbers for the CSV row; must contain ``metric``.
    metric : str or None
        Key of the validation dict that selects the best epoch (``best.params``); None
        keeps no best epoch: the model is the last one (no selection on validation data).
    mode : {"max", "min"}
        Whether a larger or smaller ``metric`` is better.
    val_interval : int
        Validate every this many epochs and always at the last epoch.
    extra_state : dict, optional
        Stored in every checkpoint (seed, set and fold ids...).
    ema : models.ema.ModelEMA, optional
        Weight average updated by ``train_epoch``; checkpointed and restored with the rest,
        and what the saved model and best params hold.
    diverged_ok : bool
        A ``FloatingPointError`` from ``train_epoch`` (a non-finite loss) ends the run as a
        result (``diverged``, no model) instead of propagating: a CV job whose learning rate
        diverges is a model that finds nothing, not a crash of the whole grid.
    keep : int
        With ``metric``, also keep the ``keep`` best epochs (``checkpoints/top_EEE.params``,
        ``top.json``): the members of a snapshot ensemble. 1 keeps the best epoch alone.
    replan : callable(epochs_done, epochs, seconds) -> int, optional
        Called after each recorded epoch with the epochs recorded so far, the current total
        and that epoch's wall seconds; returns the total from then on (a time budget cuts
        the run when its epochs run slower than planned, ``models.budget.epochs_within``,
        and its first job raises it when they run much faster,
        ``models.budget.first_job_replan``). A total below the epochs done is an error.

    Returns
    -------
    dict
        ``best_epoch``, ``best_metric``, ``epochs_run`` (rows written in this call),
        ``history`` (all rows), ``epochs`` (the total, after any ``replan``),
        ``diverged`` (the error message or None) and ``model``: the
        params file of the run's model (None when diverged) -- ``best.params`` when a best
        epoch was kept, ``last.params`` when ``metric`` was undefined at every epoch (one
        class in validation), ``model.params`` (the last epoch, averaged) without ``metric``;
        ``members``: the params files of the ``keep`` best epochs, best first (``[model]``
        when ``keep`` is 1 or no epoch was scored; [] when diverged), and their
        ``member_epochs`` ([] when no epoch was selected).
    """
    ckpt = Checkpointer(run.dir / "checkpoints")
    best = _Best(metric, mode)
    start, pending = _restore(run, ckpt, net, trainer, ema, best) if resume else (0, None)
    if not resume and run.metrics.rows():
        run.metrics.truncate_after(-1)

    def state(epoch, **more):
        return dict(extra_state or {}, epoch=epoch, best_metric=best.value,
                    best_epoch=best.epoch, **more)

    epochs_run, diverged = 0, None
    epoch = start - 1
    while epoch + 1 < epochs:
        epoch += 1
        t0 = time.time()
        if pending is None:
            row = {"epoch": epoch}
            try:
                row.update(train_epoch(epoch))
            except FloatingPointError as err:
                if not diverged_ok:
                    raise
                diverged = str(err)
                log.warning("diverged at epoch %d: %s", epoch, err)
                break
            ckpt.save_last(net, trainer, state(epoch, recorded=False, row=dict(row),
                                               train_seconds=time.time() - t0), ema=ema)
        else:  # resumed between checkpoint and row: evaluate the saved epoch again
            row, t0 = pending
            pending = None
        if (epoch + 1) % max(1, val_interval) == 0 or epoch == epochs - 1:
            val = validate(epoch)
            if best.improves(val):
                best.value, best.epoch = val[metric], epoch
                ckpt.save_best(net, epoch, metric, best.value, ema=ema)
            if keep > 1 and _defined(val.get(metric)):
                ckpt.save_top(net, epoch, val[metric], keep, mode, ema=ema)
            row.update(val)
        row["seconds"] = time.time() - t0
        run.metrics.append(row)
        ckpt.update_last(drop=("row", "train_seconds"), recorded=True, best_metric=best.value,
                         best_epoch=best.epoch)
        epochs_run += 1
        log.info("epoch %d/%d %s", epoch + 1, epochs,
                 " ".join(f"{k}={_short(v)}" for k, v in row.items() if k != "epoch"))
        if replan is not None:
            total = int(replan(epoch + 1, epochs, row["seconds"]))
            if total < epoch + 1:
                raise ValueError(f"replan gave {total} epochs after {epoch + 1} of {epochs}")
            epochs = total
    model = None if diverged else _model(ckpt, net, metric, best, ema)
    top = ckpt.load_top() if keep > 1 and best.epoch >= 0 else []  # a best epoch needs metric
    return {"best_epoch": best.epoch, "best_metric": best.value, "epochs_run": epochs_run,
            "history": run.metrics.rows(), "epochs": epochs, "diverged": diverged,
            "model": model,
            "members": [] if model is None else
            [ckpt.dir / t["params"] for t in top] or [model],
            "member_epochs": [t["epoch"] for t in top] or
            ([best.epoch] if model is not None and best.epoch >= 0 else [])}


def _restore(run, ckpt, net, trainer, ema, best):
    """Load the last checkpoint; drop the rows it does not cover. Returns the first epoch to
    run and, when the checkpoint's epoch has no row yet, ``(its row, its start time)``."""
    state = ckpt.load_last(net, trainer, ema=ema)
    if state is None:  # resume asked but no checkpoint: start clean
        run.metrics.truncate_after(-1)
        return 0, None
    epoch = state["epoch"]
    best.value, best.epoch = state.get("best_metric"), state.get("best_epoch", -1)
    # Checkpoints without the flag were written after their row.
    recorded = state.get("recorded", True)
    dropped = run.metrics.truncate_after(epoch if recorded else epoch - 1)
    if dropped:
        log.info("dropped %d metrics.csv row(s) newer than the checkpoint", dropped)
    if recorded:
        return epoch + 1, None
    log.info("epoch %d was saved but not evaluated: evaluating it again", epoch)
    return epoch, (dict(state["row"]), time.time() - state.get("train_seconds", 0.0))


def _model(ckpt, net, metric, best, ema):
    if metric is None:
        return ckpt.save_model(net, ema)
    return ckpt.best_params if best.epoch >= 0 else ckpt.last_params


def _defined(v):
    """Whether a validation value can rank an epoch (NaN where undefined never does)."""
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _short(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
