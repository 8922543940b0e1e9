"""Build an output folder beside its final place and move it in only when complete.

``prepare_data.py`` writes everything into ``OUT/.staging-<pid>/`` and, when the run has
finished, moves each entry into ``OUT`` (the entries an earlier run left are set aside
first, then deleted). A crash or ``--strict`` stop leaves ``OUT`` as it was. The
previous output is recognised by ``args.json`` naming the script, so an unrelated folder
is never replaced by accident.
"""
import json
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
OLD_PREFIX = ".old-"


def _leftover(name):
    return name.startswith(STAGING_PREFIX) or name.startswith(OLD_PREFIX)


def classify(out, script):
    """What ``out`` holds now: ``"new"`` (absent or empty), ``"previous"`` (an earlier output
    of ``script``) or ``"foreign"`` (anything else). Leftovers of crashed runs are ignored."""
    out = Path(out)
    if not out.exists():
        return "new"
    if not out.is_dir():
        return "foreign"
    entries = [p for p in out.iterdir() if not _leftover(p.name)]
    if not entries:
        return "new"
    try:
        record = json.loads((out / "args.json").read_text(encoding="utf-8"))
        if record.get("script") == script:
            return "previous"
    except (OSError, ValueError, AttributeError):
        pass
    return "foreign"


def foreign_entries(out, limit=5):
    """A few entry names of ``out`` (for an error message)."""
    names = sorted(p.name for p in Path(out).iterdir() if not _leftover(p.name))
    return names[:limit] + (["..."] if len(names) > limit else [])


def start(out):
    """Create and return a fresh staging folder inside ``out`` (removing stale ones)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for p in out.iterdir():
        if _leftover(p.name) and p.is_dir():
            log.info("removing leftover %s of an interrupted run", p)
            shutil.rmtree(p, ignore_errors=True)
    staging = out / f"{STAGING_PREFIX}{os.getpid()}"
    staging.mkdir()
    return staging


def install(staging, out, replace=()):
    """Move every entry of ``staging`` into ``out``.

    Parameters
    ----------
    staging, out : Path
    replace : sequence of str
        Names of earlier entries to remove even if this run did not produce them (the
        complete set an earlier run of the same script can write).
    """
    staging, out = Path(staging), Path(out)
    old = out / f"{OLD_PREFIX}{os.getpid()}"
    old.mkdir()
    names = {p.name for p in staging.iterdir()} | set(replace)
    for name in sorted(names):
        if (out / name).exists():
            os.replace(out / name, old / name)
    for p in sorted(staging.iterdir()):
        os.replace(p, out / p.name)
    staging.rmdir()
    shutil.rmtree(old, ignore_errors=True)


def abandon(staging):
    """Delete a staging folder after a failed run."""
    shutil.rmtree(staging, ignore_errors=True)
