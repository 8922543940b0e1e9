"""Grouped held-out test set and k-fold cross-validation (notes 002, "5折交叉验证").

Two halves of one screenshot (and all screenshots of one patient, when a ``--groups`` CSV
says who is who) must never sit on both sides of a split, or a fold validates on the
twin of a training image. Splitting is by group with scikit-learn's ``GroupShuffleSplit``
(test set) and shuffled ``GroupKFold`` (folds), so the same seed gives the same split.
"""
import csv
import logging
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold, GroupShuffleSplit

log = logging.getLogger(__name__)

SOURCE_COLUMNS = ("source", "file", "filename", "image")


def read_groups_csv(path, column=None):
    """Read a source -> group table.

    Parameters
    ----------
    path : str or Path
        CSV with a header row. One column names the raw file (``source``, ``file``,
        ``filename`` or ``image``: file name with or without extension); another holds the
        group (patient id).
    column : str or None
        The group column. Default: ``patient`` if present, else the only other column.

    Returns
    -------
    table : dict
        Keys are both the file name and its stem; values are group labels (str).
    column : str
        The group column used.

    Raises
    ------
    ValueError
        Missing columns, ambiguous group column, or one file given two groups.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"--groups {path}: no data rows (want a header and one row per file)")
    fields = list(rows[0].keys())
    src = next((c for c in fields if c.strip().lower() in SOURCE_COLUMNS), None)
    if src is None:
        raise ValueError(f"--groups {path}: want a column named one of {SOURCE_COLUMNS}, "
                         f"found {fields}")
    if column is None:
        others = [c for c in fields if c != src]
        if "patient" in others:
            column = "patient"
        elif len(others) == 1:
            column = others[0]
        else:
            raise ValueError(f"--groups {path}: cannot tell the group column among {others}; "
                             f"name it 'patient' or keep only two columns")
    elif column not in fields:
        raise ValueError(f"--groups {path}: no column {column!r}; found {fields}")
    table = {}
    for lineno, row in enumerate(rows, start=2):
        name = (row[src] or "").strip()
        group = (row[column] or "").strip()
        if not name or not group:
            raise ValueError(f"--groups {path}:{lineno}: empty {src!r} or {column!r}")
        for key in (name, Path(name).stem):
            if table.get(key, group) != group:
                raise ValueError(f"--groups {path}:{lineno}: {name!r} is in group {group!r} "
                                 f"and {table[key]!r}")
            table[key] = group
    return table, column


def make_splits(ids, groups, k=5, test_frac=0.2, seed=0, group_by="source"):
    """Held-out test ids and k grouped folds over the rest.

    Parameters
    ----------
    ids : sequence of str
        Sample ids (unique).
    groups : sequence of str
        Group label of each id (same length).
    k : int
        Number of folds (>= 2), or 0/1 for no folds.
    test_frac : float
        Fraction of *groups* held out for testing, in [0, 1).
    seed : int
        Random seed; the same inputs and seed give the same split.
    group_by : str
        Recorded in the result (``"source"`` or the CSV column).

    Returns
    -------
    dict
        ``{"seed", "k", "test_frac", "group_by", "test": [ids], "train": [ids],
        "folds": [{"train": [ids], "val": [ids]}, ...]}`` (docs/CONTRACTS.md). Id lists keep
        the input order; fold ``val`` lists partition ``train``.

    Raises
    ------
    ValueError
        Too few groups for the test fraction or the folds.
    """
    ids = list(ids)
    groups = np.asarray([str(g) for g in groups])
    if len(ids) != len(groups):
        raise ValueError(f"{len(ids)} ids but {len(groups)} group labels")
    if len(set(ids)) != len(ids):
        raise ValueError("sample ids are not unique")
    if not 0 <= test_frac < 1:
        raise ValueError(f"test_frac={test_frac}; want a fraction in [0, 1)")
    n_groups = len(set(groups))
    idx = np.arange(len(ids))
    if test_frac > 0 and len(ids):
        if n_groups < 2:
            raise ValueError(f"test_frac={test_frac} needs at least 2 groups, found {n_groups}")
        gss = GroupShuffleSplit(n_splits=1, test_size=test_frac, random_state=seed)
        train_idx, test_idx = next(gss.split(idx, groups=groups))
    else:
        train_idx, test_idx = idx, idx[:0]
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    folds = []
    if k >= 2:
        train_groups = groups[train_idx]
        n_train_groups = len(set(train_groups))
        if n_train_groups < k:
            raise ValueError(f"{k} folds need at least {k} groups outside the test set, found "
                             f"{n_train_groups} (of {n_groups}); lower --folds or --test-frac")
        gkf = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
        for tr, va in gkf.split(train_idx, groups=train_groups):
            folds.append({"train": [ids[i] for i in train_idx[np.sort(tr)]],
                          "val": [ids[i] for i in train_idx[np.sort(va)]]})
    return {"seed": int(seed), "k": int(k) if k >= 2 else 0, "test_frac": float(test_frac),
            "group_by": group_by, "test": [ids[i] for i in test_idx],
            "train": [ids[i] for i in train_idx], "folds": folds}


def check_splits(splits, groups_by_id):
    """Verify the split invariants; raise ValueError naming the first violation.

    Checked: test and train are disjoint and cover every id; each fold's val lists partition
    train; no group appears on both sides of the test split or of any fold.
    """
    test, train = set(splits["test"]), set(splits["train"])
    if test & train:
        raise ValueError(f"ids both in test and train: {sorted(test & train)[:5]}")
    if test | train != set(groups_by_id):
        raise ValueError("test + train do not cover the ids")

    def crossing(a, b):
        return {groups_by_id[i] for i in a} & {groups_by_id[i] for i in b}

    if crossing(test, train):
        raise ValueError(f"groups in test and train: {sorted(crossing(test, train))[:5]}")
    seen = []
    for n, fold in enumerate(splits["folds"]):
        if set(fold["train"]) | set(fold["val"]) != train or set(fold["train"]) & set(fold["val"]):
            raise ValueError(f"fold {n}: train/val do not partition the training ids")
        if crossing(fold["train"], fold["val"]):
            raise ValueError(f"fold {n}: groups in train and val: "
                             f"{sorted(crossing(fold['train'], fold['val']))[:5]}")
        seen += fold["val"]
    if splits["folds"] and sorted(seen) != sorted(train):
        raise ValueError("fold val lists do not partition the training ids")
