"""Class names: parsed from ``--classes``, recorded in ``DATA/classes.txt``, read everywhere.

Classes come from the data (docs/CONTRACTS.md): ``prepare_data.py`` writes the class list of
a prepared folder to ``DATA/classes.txt``, one name per line in class-index order, and every
later stage reads it with :func:`data_classes` (or takes ``classes`` from a ``model.json``)
instead of assuming ``["lesion"]``. A folder prepared before classes.txt existed holds one
class, ``lesion``; it is read as such, with a log line. A ``--classes`` a user gives
explicitly must agree with the recorded list (:func:`check_classes`), so a model is never
trained or scored against a silently re-ordered or different list.
"""
import logging
from collections import Counter
from pathlib import Path

from datasets.prepared import labelme
from infra.atomic import atomic_write_text

log = logging.getLogger(__name__)

CLASSES_FILE = "classes.txt"
LEGACY_CLASSES = ["lesion"]
# labelme's labels.txt (labelme2voc/labelme2coco --labels) starts with these two lines,
# which are not object classes.
LABELME_SPECIAL = ("__ignore__", "_background_")


def _check_names(names, where):
    bad = [n for n in names if not n or n != n.strip() or any(c in n for c in "\t\r\n")]
    if bad:
        raise ValueError(f"{where}: class names must be non-empty, without tabs, newlines or "
                         f"surrounding spaces; found {bad!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{where}: class names {dup} appear more than once")
    if not names:
        raise ValueError(f"{where}: no class names")
    return list(names)


def parse_classes(spec, where="--classes"):
    """A class list from ``"a,b,c"`` or a text file with one name per line.

    Parameters
    ----------
    spec : str or sequence of str or None
        Comma-separated names, the path of a file (one name per line; blank lines and
        labelme's ``__ignore__`` / ``_background_`` lines of a ``labels.txt`` skipped), or
        an already split list. None gives None.
    where : str
        Context for messages.

    Returns
    -------
    list of str or None
        Names in the given order (which is the class-index order).

    Raises
    ------
    ValueError
        Empty, duplicate or malformed names.
    """
    if spec is None:
        return None
    if not isinstance(spec, str):
        return _check_names([str(n) for n in spec], where)
    path = Path(spec)
    if "," not in spec and path.is_file():
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines()]
        return _check_names([ln for ln in lines if ln and ln not in LABELME_SPECIAL],
                            f"{where} {spec}")
    return _check_names([n.strip() for n in spec.split(",") if n.strip()], where)


def write_classes(data_dir, classes):
    """Write ``DATA/classes.txt`` (one name per line, index order) atomically."""
    classes = _check_names(list(classes), "classes")
    return atomic_write_text(Path(data_dir) / CLASSES_FILE, "".join(c + "\n" for c in classes))


def read_classes(data_dir):
    """The class list of a prepared folder.

    Parameters
    ----------
    data_dir : str or Path
        A ``prepare_data.py`` output folder.

    Returns
    -------
    list of str
        ``DATA/classes.txt`` in order; ``["lesion"]`` for a folder prepared before that file
        existed (logged).
    """
    path = Path(data_dir) / CLASSES_FILE
    if not path.is_file():
        log.info("%s: no %s (prepared before classes were recorded); using %s", data_dir,
                 CLASSES_FILE, LEGACY_CLASSES)
        return list(LEGACY_CLASSES)
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return _check_names([ln for ln in lines if ln], str(path))


def check_classes(found, given, found_where, given_where="--classes", advice=None):
    """``found`` if ``given`` is None or the same list; else a ValueError naming both.

    Parameters
    ----------
    found : list of str
        The recorded list (classes.txt, model.json, a detections JSON).
    given : str or list of str or None
        What the user passed explicitly (:func:`parse_classes` syntax).
    found_where, given_where : str
        Where each list came from, for the message.
    advice : str, optional
        What to do instead (default: drop the explicit option or prepare the data again).
    """
    given = parse_classes(given, given_where)
    if given is None or list(given) == list(found):
        return list(found)
    hint = (" (same names, another order: the order fixes the class ids)"
            if sorted(given) == sorted(found) else "")
    advice = advice or (f"drop {given_where} (the recorded classes are used) or prepare the "
                        f"data again with these classes")
    raise ValueError(f"{given_where} {given} disagrees with the classes {list(found)} of "
                     f"{found_where}{hint}; {advice}")


def data_classes(data_dir, given=None):
    """The classes of a prepared folder, checked against an explicit ``--classes``.

    The one reader the scripts use: :func:`read_classes` then :func:`check_classes`.
    """
    path = Path(data_dir) / CLASSES_FILE
    where = str(path) if path.is_file() else f"{data_dir} (no {CLASSES_FILE}: one class)"
    return check_classes(read_classes(data_dir), given, where)


def resolve_classes(rows, given):
    """The class list of the samples, and every ``__ignore__`` box given a class.

    Parameters
    ----------
    rows : list of dict
        Sample rows with ``objects`` (``name`` a class or ``__ignore__``); changed in place:
        ignore boxes (difficult) take the first class, since a VOC object needs a class.
    given : list of str or None
        ``--classes``: fixes the order and refuses other names. None: the names found,
        sorted by code point (deterministic whatever the file order).

    Returns
    -------
    list of str
    """
    found = Counter(o["name"] for r in rows for o in r["objects"] if o["name"] != labelme.IGNORE)
    if given is None:
        classes = sorted(found)
    else:
        classes = list(given)
        outside = sorted(set(found) - set(classes))
        if outside:
            files = {n: sorted({r["source"] for r in rows for o in r["objects"]
                                if o["name"] == n}) for n in outside}
            seen = "; ".join(f"{n!r} ({found[n]} boxes, e.g. {', '.join(files[n][:2])})"
                             for n in outside)
            raise ValueError(f"--classes {classes}: labels {outside} are not classes: {seen}; "
                             f"add them to --classes or rename them with --label-map "
                             f"'{outside[0]}=<class>' (or '{outside[0]}={labelme.IGNORE}')")
    n_ignore = 0
    for r in rows:
        for o in r["objects"]:
            if o["name"] == labelme.IGNORE:
                o["name"], n_ignore = classes[0], n_ignore + 1
    if n_ignore and len(classes) > 1:
        log.info("%d %s boxes are difficult boxes of class %r (the first class): they excuse "
                 "misses of that class only", n_ignore, labelme.IGNORE, classes[0])
    return classes
