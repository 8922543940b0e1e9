"""Resumable checkpoints: params + trainer state + a JSON pointer written last; the best
epoch's params with ``best.json``; the run's model.

``last.json`` names the epoch the ``last.params``/``last.states`` pair belongs to and is
moved into place only after both files are complete (see STYLE.md section 5). It also says
whether that epoch's metrics.csv row is written (``recorded``): the last checkpoint is saved
before the epoch is evaluated, so a run stopped during the evaluation resumes by evaluating
that epoch again instead of training it again (``models.epochs.fit``).

Files in ``checkpoints/``:

    last.params, last.states, last.ema   the last epoch's weights, trainer state, average
    last.json                            {"epoch", "recorded", "best_epoch", "best_metric", ...}
    best.params, best.json               the epoch kept by the validation metric and
                                         {"epoch", "metric", "value"} (runs that keep one)
    model.params                         the last epoch as the model, its weight average when
                                         there is one (runs that keep no best epoch)
    top_EEE.params, top.json             the ``keep`` best epochs by the validation metric
                                         and [{"epoch", "value", "params"}], best first
                                         (runs that keep a snapshot ensemble)
"""
import json
import logging
from pathlib import Path

from infra.atomic import atomic_save, atomic_write_json
from models.ema import averaged

log = logging.getLogger(__name__)


def _save_atomic(save_fn, path):
    # MXNet writes the file itself, so write under a temporary name and rename.
    atomic_save(save_fn, path)


def _distributed(trainer):
    kv = getattr(trainer, "_kvstore", None)
    kv_type = kv.type if kv is not None and not isinstance(kv, str) else (kv or "")
    return "dist" in str(kv_type)


class Checkpointer:
    """Save and restore the last and best states of a Gluon net and its Trainer.

    Parameters
    ----------
    ckpt_dir : str or Path
        Folder for the files listed in the module docstring.
    """

    def __init__(self, ckpt_dir):
        self.dir = Path(ckpt_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.last_params = self.dir / "last.params"
        self.last_states = self.dir / "last.states"
        self.last_json = self.dir / "last.json"
        self.last_ema = self.dir / "last.ema"
        self.best_params = self.dir / "best.params"
        self.best_json = self.dir / "best.json"
        self.model_params = self.dir / "model.params"
        self.top_json = self.dir / "top.json"
        self._state = None

    def save_last(self, net, trainer, state, ema=None):
        """Write params, trainer states (skipped under a dist kvstore, where MXNet cannot save
        them: MXNET_TRAPS 36), the weight average ``ema`` (``models.ema.ModelEMA``) and then
        the pointer with ``state`` (must hold "epoch")."""
        if "epoch" not in state:
            raise ValueError("checkpoint state needs an 'epoch' entry")
        _save_atomic(net.save_parameters, self.last_params)
        has_states = trainer is not None and not _distributed(trainer)
        if has_states:
            _save_atomic(trainer.save_states, self.last_states)
        state = dict(state, has_states=has_states)
        if ema is not None:
            _save_atomic(ema.save, self.last_ema)
            state["ema_updates"] = ema.updates
        atomic_write_json(self.last_json, state)
        self._state = state

    def update_last(self, drop=(), **changes):
        """Rewrite the pointer of the checkpoint saved (or loaded) last with ``changes``
        (``recorded``, the best so far) and without the keys ``drop``; its files stay as
        they are."""
        if self._state is None:
            raise RuntimeError("update_last before any save_last or load_last")
        self._state = {k: v for k, v in dict(self._state, **changes).items() if k not in drop}
        atomic_write_json(self.last_json, self._state)

    def save_best(self, net, epoch, metric, value, ema=None):
        """``best.params`` (the weights validated: their average with ``ema``), then
        ``best.json`` naming the epoch and its ``metric`` ``value``."""
        with averaged(ema):
            _save_atomic(net.save_parameters, self.best_params)
        atomic_write_json(self.best_json, {"epoch": epoch, "metric": metric, "value": value})

    def load_top(self):
        """The snapshots kept so far (``top.json``), best first; [] before the first."""
        if not self.top_json.exists():
            return []
        with open(self.top_json, encoding="utf-8") as f:
            return json.load(f)

    def save_top(self, net, epoch, value, keep, mode="max", ema=None):
        """Keep the ``keep`` best epochs by ``value`` as ``top_EEE.params`` (the weights
        validated: their average with ``ema``) listed in ``top.json``, best first; ties keep
        the earlier epoch, as the best epoch does. An epoch validated again (a resumed run)
        replaces its own entry. Returns the list.

        The list is written before the file it drops is deleted: a crash leaves an orphan
        file, never a listed file missing.
        """
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        old = self.load_top()
        sign = -1.0 if mode == "max" else 1.0
        entry = {"epoch": int(epoch), "value": float(value), "params": f"top_{epoch:03d}.params"}
        top = sorted([t for t in old if t["epoch"] != epoch] + [entry],
                     key=lambda t: (sign * t["value"], t["epoch"]))[:keep]
        if entry in top:
            with averaged(ema):
                _save_atomic(net.save_parameters, self.dir / entry["params"])
        if top != old:
            atomic_write_json(self.top_json, top)
        kept = {t["params"] for t in top}
        for t in old:
            if t["params"] not in kept:
                (self.dir / t["params"]).unlink(missing_ok=True)
        return top

    def save_model(self, net, ema=None):
        """``model.params``: the net as it is, through its weight average ``ema`` if given;
        returns the path."""
        with averaged(ema):
            _save_atomic(net.save_parameters, self.model_params)
        return self.model_params

    def load_last(self, net, trainer=None, ctx=None, ema=None):
        """Restore the last checkpoint into ``net`` (and ``trainer``, ``ema``); return its
        state dict, or None when there is no checkpoint yet."""
        if not self.last_json.exists():
            return None
        with open(self.last_json, encoding="utf-8") as f:
            state = json.load(f)
        net.load_parameters(str(self.last_params), ctx=ctx)
        if trainer is not None and state.get("has_states") and self.last_states.exists():
            trainer.load_states(str(self.last_states))
        if ema is not None:
            if "ema_updates" not in state or not self.last_ema.exists():
                raise ValueError(f"{self.last_json}: the checkpoint has no weight average "
                                 f"(saved without EMA); resume with the run's own options")
            ema.load(self.last_ema, state["ema_updates"])
        log.info("resumed from %s (epoch %s)", self.last_json, state["epoch"])
        self._state = state
        return state
