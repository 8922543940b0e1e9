"""The one reader of a prepared DATA folder's tables: ``manifest.csv`` and ``splits.json``.

``prepare_data.py`` writes them (docs/CONTRACTS.md, "Prepared data"); every later stage
reads them here, so a missing file always names itself and the command that makes it. The
third table, ``classes.txt``, has its reader beside its parser and writer:
:func:`datasets.prepared.classes.read_classes` (checked against ``--classes`` by
``data_classes``).
"""
import csv
import json
from pathlib import Path

MANIFEST = "manifest.csv"
SPLITS = "splits.json"


def _table(data_dir, name, what):
    path = Path(data_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what}; run prepare_data.py --out {data_dir}")
    return path


def read_manifest(data_dir):
    """Rows of ``DATA/manifest.csv``.

    Parameters
    ----------
    data_dir : str or Path
        A ``prepare_data.py`` output folder.

    Returns
    -------
    list of dict
        One dict of strings per sample, in file order, keyed by the header (at least
        ``id, source, group, side, x_offset, y_offset, width, height, n_boxes``).

    Raises
    ------
    FileNotFoundError
        No manifest: the message names the file and the command that writes it.
    """
    with open(_table(data_dir, MANIFEST, "manifest"), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def manifest_by_id(data_dir):
    """``{sample id: manifest row}`` (rows as :func:`read_manifest` gives them)."""
    return {row["id"]: row for row in read_manifest(data_dir)}


def read_splits(data_dir):
    """``DATA/splits.json``: the grouped test split and the k folds.

    Returns
    -------
    dict
        ``{"test": [ids], "train": [ids], "folds": [{"train": [ids], "val": [ids]}, ...]}``
        and whatever else prepare_data.py recorded beside them.

    Raises
    ------
    FileNotFoundError
        No splits file: the message names it and the command that writes it.
    """
    with open(_table(data_dir, SPLITS, "splits"), encoding="utf-8") as f:
        return json.load(f)
