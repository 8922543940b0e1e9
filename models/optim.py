"""The optimizer factory of both trainers: a ``gluon.Trainer`` and its LR schedule.

The detector (SGD as GluonCV's recipe, or Adam for the CPU recipe) and the filter (SGD) get
their trainer here, the schedule from ``models.schedules`` (per iteration, importable so that
it unpickles on dist kvstore servers: MXNET_TRAPS 36). find_lr.py and the benches build a
fixed-LR trainer with :func:`make_trainer` alone.
"""
import mxnet as mx
from mxnet import gluon

from models import schedules

OPTIMIZERS = ("sgd", "adam")


def make_trainer(net, lr_scheduler, kvstore="device", wd=5e-4, momentum=0.9, amp=False,
                 learning_rate=None, optimizer="sgd"):
    """SGD (or Adam) trainer over all parameters, ready for its first step.

    Parameters
    ----------
    net : HybridBlock
    lr_scheduler : mx.lr_scheduler.LRScheduler or None
        From ``models.schedules.build_schedule`` (importable, so it unpickles on the
        kvstore servers: MXNET_TRAPS 36). None for a fixed LR (the LR range test sets it).
    kvstore : str or mx.kvstore.KVStore
        A kind ('device', 'local', 'nccl'; with one device Gluon uses none) or the dist
        store from ``models.yolo_train.create_kvstore``.
    wd, momentum : float
    amp : bool
        Hand the trainer to ``mxnet.contrib.amp`` (GPU only; forces update_on_kvstore=False).
    learning_rate : float, optional
        Initial LR when there is no scheduler.
    optimizer : {"sgd", "adam"}
        SGD with momentum is GluonCV's recipe; Adam reaches a usable detector in far fewer
        iterations when training from scratch on a CPU budget (measured on phantoms).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    opt = {"wd": wd, "momentum": momentum} if optimizer == "sgd" else {"wd": wd}
    if lr_scheduler is not None:
        # No learning_rate next to it: MXNet would overwrite the scheduler's base_lr and warn.
        opt["lr_scheduler"] = lr_scheduler
    elif learning_rate is not None:
        opt["learning_rate"] = learning_rate
    trainer = gluon.Trainer(net.collect_params(), optimizer, opt, kvstore=kvstore,
                            update_on_kvstore=False if amp else None)
    if amp:
        from mxnet.contrib import amp as mx_amp
        mx_amp.init_trainer(trainer)
    if amp and not isinstance(kvstore, str) and "dist" in kvstore.type:
        # Push the initial weights and wait before any gradient goes out: with
        # update_on_kvstore=False (forced by AMP) the async initial pull otherwise races the
        # first push on the same key (MXNET_TRAPS 35). Not with update_on_kvstore=True: the
        # optimizer would reach the servers with rescale_grad=1 and the first step(batch)
        # would raise "Possible change in the batch_size" (TRAPS 34); the lazy path is safe.
        trainer._init_kvstore()
        trainer._init_params()
        mx.nd.waitall()
    return trainer


def scheduled_trainer(net, schedule, iters_per_epoch, epochs, optimizer="sgd", wd=5e-4,
                      momentum=0.9, kvstore="device", amp=False):
    """A trainer whose LR follows ``schedule`` over ``epochs`` epochs.

    Parameters
    ----------
    schedule : dict
        ``models.schedules.schedule_kwargs(args)`` (mode, base LR, warm-up ...).
    iters_per_epoch, epochs : int
        Updates per epoch and epochs of the run: the schedule's length.

    Returns
    -------
    (gluon.Trainer, models.schedules.WarmupSchedule)
        The schedule too, to log it and to read the LR a dist kvstore's server applies.
    """
    sched = schedules.build_schedule(**schedule, iters_per_epoch=iters_per_epoch,
                                     epochs=epochs)
    return make_trainer(net, sched, kvstore, wd, momentum, amp, optimizer=optimizer), sched
