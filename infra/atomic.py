"""Atomic file writes: a crash leaves the old file or the new one, never half of one.

Every stage writes its outputs through here (VOC XML, manifests, ``.lst`` files, JSON, run
records, plots), so this module sits below all of them: standard library only, and it
imports nothing of the project (the rules are in ``infra/__init__.py``).

Files and folders end with the mode a plain ``open(path, "w")`` / ``os.mkdir`` would give:
``0o666`` / ``0o777`` minus the user's umask (0644 / 0755 under umask 0022), and a file that
is replaced keeps its mode, as ``open`` keeps it. ``tempfile.mkstemp`` and
``tempfile.mkdtemp`` create 0600 / 0700 whatever the umask, which a rename then carried to
the final name: a colleague on a shared server could not read a run's results.
"""
import json
import os
import secrets
import stat
from pathlib import Path

_TRIES = 100


def _temp_sibling(path, suffix=".tmp"):
    """A hidden name beside ``path`` that is unlikely to exist (``_claim`` makes sure)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{suffix}")


def _claim(new_name, create, where):
    """``create(name)`` on fresh names until one did not exist; returns (name, result)."""
    for _ in range(_TRIES):
        name = new_name()
        try:
            return name, create(name)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name {where} after {_TRIES} tries")


def _rename_into_place(tmp, path, complete):
    """``complete(tmp)`` finishes the temporary file, which then replaces ``path``; on any
    failure the temporary file goes and ``path`` stays as it was."""
    try:
        complete(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return path


def current_umask():
    """The process umask.

    Read from ``/proc/self/status`` (Linux >= 4.7) without changing it; elsewhere set and
    restored at once, which a thread creating a file in that instant could notice.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _existing_mode(path):
    try:
        return stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except FileNotFoundError:
        return None


def plain_file_mode(path):
    """The permission bits ``open(path, "w")`` would leave: those of the file it replaces
    (a user's ``chmod 640`` stays), or ``0o666`` minus the umask for a new file."""
    mode = _existing_mode(path)
    return 0o666 & ~current_umask() if mode is None else mode


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename,
    so a crash leaves either the old file or the new one, never half of one.

    The temporary file is created with mode ``0o666`` so the umask applies, as it does to
    ``open(path, "wb")``; an existing ``path`` passes its mode on. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    tmp, fd = _claim(lambda: _temp_sibling(path), lambda name: os.open(name, flags, 0o666),
                     f"beside {path}")

    def complete(_):
        with os.fdopen(fd, "wb") as f:
            mode = _existing_mode(path)  # a new file has its mode from os.open already
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return _rename_into_place(tmp, path, complete)


def atomic_write_text(path, text):
    """UTF-8 ``text`` to ``path``, atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj):
    # numpy scalars/arrays and paths show up in summaries; keep this module numpy-free.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path, obj):
    """``obj`` as indented JSON (numpy values and paths allowed), atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False,
                                              default=_json_default) + "\n")


def atomic_save(save, path):
    """Let a library write a file under a temporary name, then rename it into place.

    For writers that take a file name and open it themselves (MXNet's
    ``save_parameters``, ``Trainer.save_states``, ``mx.nd.save``). The file ends with
    :func:`plain_file_mode`, whatever mode the writer created it with.

    Parameters
    ----------
    save : callable
        ``save(tmp_name)`` writes the complete file at ``tmp_name`` (a str in the same
        folder as ``path``, not existing before the call).
    path : str or Path
        Final name; replaced only once ``save`` has returned.

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def reserve(name):  # the writer creates the file itself
        if os.path.lexists(name):
            raise FileExistsError(name)

    def complete(name):
        save(str(name))
        os.chmod(name, plain_file_mode(path))

    tmp, _ = _claim(lambda: _temp_sibling(path), reserve, f"beside {path}")
    return _rename_into_place(tmp, path, complete)


def make_temp_dir(parent, prefix="", suffix=".tmp"):
    """Create a new empty folder ``parent/<prefix><random><suffix>``; return its path (str).

    Like ``tempfile.mkdtemp`` but with the mode ``os.mkdir`` gives (``0o777`` minus the
    umask), for folders that are built whole and then renamed into place, so the final
    folder reads like any other (mkdtemp's 0700 would follow it through the rename).
    """
    name, _ = _claim(lambda: os.path.join(parent, f"{prefix}{secrets.token_hex(4)}{suffix}"),
                     os.mkdir, f"in {parent}")
    return name
