"""Resumable checkpoints: params + trainer state + a JSON pointer written last.

``last.json`` names the epoch the ``last.params``/``last.states`` pair belongs to and is
moved into place only after both files are complete, so a kill at any moment leaves either
the previous checkpoint or the new one (see STYLE.md section 5).
"""
import json
import logging
from pathlib import Path

from infra.atomic import atomic_save, atomic_write_json

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
        Folder for ``last.params``, ``last.states``, ``last.json`` and ``best.params``.
    """

    def __init__(self, ckpt_dir):
        self.dir = Path(ckpt_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.last_params = self.dir / "last.params"
        self.last_states = self.dir / "last.states"
        self.last_json = self.dir / "last.json"
        self.best_params = self.dir / "best.params"
        self.last_ema = self.dir / "last.ema"

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

    def save_best(self, net):
        _save_atomic(net.save_parameters, self.best_params)

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
        return state
