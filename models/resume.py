"""Options of a resumed run: both trainers take them from the run's args.json.

``--resume RUN_DIR`` continues a run with the options it was started with. An option that
defines the run (data, grid, schedule, seed ...) and is given again with a value that is
neither its default nor the stored one is refused, naming the option: silently taking either
value would change the run under the models it already trained.
"""
import json
from pathlib import Path


def stored_record(run_dir):
    """The ``args.json`` record of a run folder (``options``, ``derived``, ``argv``)."""
    path = Path(run_dir) / "args.json"
    if not path.is_file():
        raise FileNotFoundError(f"--resume {run_dir}: no args.json there; not a run folder")
    return json.loads(path.read_text(encoding="utf-8"))


def take_stored_options(args, stored, defaults, fixed):
    """Set every option of ``fixed`` found in ``stored`` on ``args``; refuse conflicts.

    Parameters
    ----------
    args : argparse.Namespace
        The command line of the resuming call; changed in place.
    stored : dict
        The run's options (``args.json`` "options").
    defaults : dict
        Option -> parser default: a value equal to it counts as not given.
    fixed : iterable of str
        Options a resumed run must keep.

    Returns
    -------
    argparse.Namespace
        ``args``.

    Raises
    ------
    ValueError
        An option of ``fixed`` was given with a value other than its default and the stored
        one.
    """
    for key in fixed:
        if key not in stored:
            continue
        given, kept = getattr(args, key), stored[key]
        if given != kept and given != defaults.get(key):
            raise ValueError(f"--resume {args.resume}: --{key.replace('_', '-')} {given!r} "
                             f"conflicts with the run's {kept!r}; drop the option or start a "
                             "new run")
        setattr(args, key, kept)
    return args


def resume_options(args, parser, fixed):
    """:func:`take_stored_options` from ``args.resume``'s args.json, with ``parser``'s
    defaults; returns the whole stored record (its ``derived`` values may be needed too)."""
    record = stored_record(args.resume)
    take_stored_options(args, record["options"], vars(parser.parse_args([])), fixed)
    return record
