"""The epoch bookkeeping both trainers share: resume, one CSV row per epoch, best-by-metric.

The training step and the validation stay in the scripts (the loop a reader came to see);
this module only decides where to start, what to record and what to keep.
"""
import logging
import math
import time

from models.checkpoint import Checkpointer

log = logging.getLogger(__name__)


def fit(run, net, trainer, epochs, train_epoch, validate, metric=None, resume=False,
        mode="max", val_interval=1, extra_state=None, ema=None):
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
        Key of the validation dict that selects the best epoch (saved as best.params); None
        keeps no best epoch (the model is the last one: no selection on validation data).
    mode : {"max", "min"}
        Whether a larger or smaller ``metric`` is better.
    val_interval : int
        Validate every this many epochs and always at the last epoch.
    extra_state : dict, optional
        Stored in every checkpoint (seed, set and fold ids...).
    ema : models.ema.ModelEMA, optional
        Weight average updated by ``train_epoch``; checkpointed and restored with the rest.

    Returns
    -------
    dict
        ``best_epoch``, ``best_metric``, ``epochs_run`` (in this call), ``history`` (all rows).

    Notes
    -----
    The checkpoint of an epoch is written after its validation and its CSV row, so a run
    killed at any point resumes at the first epoch that has no row and no epoch gets two.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    ckpt = Checkpointer(run.dir / "checkpoints")
    better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
    best_metric, best_epoch, start = None, -1, 0
    state = ckpt.load_last(net, trainer, ema=ema) if resume else None
    if state is not None:
        start = state["epoch"] + 1
        best_metric, best_epoch = state.get("best_metric"), state.get("best_epoch", -1)
        dropped = run.metrics.truncate_after(state["epoch"])
        if dropped:
            log.info("dropped %d metrics.csv row(s) newer than the checkpoint", dropped)
    elif run.metrics.rows():
        # A fresh start in a folder with rows (resume asked but no checkpoint): start clean.
        run.metrics.truncate_after(-1)
    epochs_run = 0
    for epoch in range(start, epochs):
        t0 = time.time()
        row = {"epoch": epoch}
        row.update(train_epoch(epoch))
        if (epoch + 1) % max(1, val_interval) == 0 or epoch == epochs - 1:
            val = validate(epoch)
            if metric is not None and metric not in val:
                raise KeyError(f"validate() returned {sorted(val)}, missing {metric!r}")
            row.update(val)
            value = val[metric] if metric is not None else None
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                if best_metric is None or better(value, best_metric):
                    best_metric, best_epoch = value, epoch
                    ckpt.save_best(net)
        row["seconds"] = time.time() - t0
        run.metrics.append(row)
        ckpt.save_last(net, trainer, dict(extra_state or {}, epoch=epoch,
                                          best_metric=best_metric, best_epoch=best_epoch),
                       ema=ema)
        epochs_run += 1
        log.info("epoch %d/%d %s", epoch + 1, epochs,
                 " ".join(f"{k}={_short(v)}" for k, v in row.items() if k != "epoch"))
    return {"best_epoch": best_epoch, "best_metric": best_metric, "epochs_run": epochs_run,
            "history": run.metrics.rows()}


def _short(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
