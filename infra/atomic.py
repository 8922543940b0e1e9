"""Atomic file writes: a crash leaves the old file or the new one, never half of one.

Every stage writes its outputs through here (VOC XML, manifests, records' lists, JSON,
run records), so this module is infrastructure below all of them: standard library only.
"""
import json
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename,
    so a crash leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path, text):
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj):
    # numpy scalars/arrays and paths show up in summaries; keep this module numpy-free.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path, obj):
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False,
                                              default=_json_default) + "\n")
