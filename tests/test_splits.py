"""Grouped test split and k folds (datasets/prepared/splits.py): no group ever crosses a split."""
import numpy as np
import pytest

from datasets.prepared.splits import check_splits, make_splits, read_groups_csv


def samples(rng, n_sources=40, both_frac=0.3, patients=None):
    """Ids like the prepared data: one or two halves per screenshot."""
    ids, source = [], {}
    for s in range(n_sources):
        sides = ["L", "R"] if rng.random() < both_frac else [str(rng.choice(["L", "R"]))]
        for side in sides:
            ids.append(f"scan_{s:04d}_{side}")
            source[ids[-1]] = f"scan_{s:04d}.jpg" if patients is None else f"p{s % patients}"
    return ids, source


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k,test_frac,patients", [(5, 0.2, None), (3, 0.25, 7), (5, 0.0, None),
                                                  (0, 0.3, None)])
def test_no_group_crosses_a_split(seed, k, test_frac, patients):
    rng = np.random.default_rng(seed)
    ids, group = samples(rng, patients=patients)
    sp = make_splits(ids, [group[i] for i in ids], k=k, test_frac=test_frac, seed=seed)
    check_splits(sp, group)                           # the module's own check ...
    # ... and an independent one, written out.
    test_groups = {group[i] for i in sp["test"]}
    assert not test_groups & {group[i] for i in sp["train"]}
    assert sorted(sp["test"] + sp["train"]) == sorted(ids)
    assert len(sp["folds"]) == (k if k >= 2 else 0)
    vals = [i for f in sp["folds"] for i in f["val"]]
    if k >= 2:
        assert sorted(vals) == sorted(sp["train"])
    for f in sp["folds"]:
        assert not {group[i] for i in f["val"]} & {group[i] for i in f["train"]}
        assert sorted(f["train"] + f["val"]) == sorted(sp["train"])
    n_groups = len(set(group.values()))
    if test_frac:
        assert abs(len(test_groups) - test_frac * n_groups) <= 1


def test_deterministic_by_seed_and_order_kept():
    rng = np.random.default_rng(5)
    ids, group = samples(rng)
    a = make_splits(ids, [group[i] for i in ids], seed=3)
    b = make_splits(ids, [group[i] for i in ids], seed=3)
    c = make_splits(ids, [group[i] for i in ids], seed=4)
    assert a == b and a != c
    assert a["train"] == [i for i in ids if i in set(a["train"])]
    assert set(a) == {"seed", "k", "test_frac", "group_by", "test", "train", "folds"}


def test_check_splits_catches_a_leak():
    rng = np.random.default_rng(6)
    ids, group = samples(rng, both_frac=1.0)
    sp = make_splits(ids, [group[i] for i in ids], seed=0)
    leaked = dict(sp, test=sp["test"][1:], train=sp["train"] + sp["test"][:1])
    with pytest.raises(ValueError, match="groups in test and train"):
        check_splits(leaked, group)


def test_too_few_groups():
    with pytest.raises(ValueError, match="5 folds need at least 5 groups"):
        make_splits(["a", "b", "c", "d"], ["1", "2", "3", "4"], k=5, test_frac=0.0)
    with pytest.raises(ValueError, match="at least 2 groups"):
        make_splits(["a", "b"], ["1", "1"], k=0, test_frac=0.5)
    with pytest.raises(ValueError, match="not unique"):
        make_splits(["a", "a"], ["1", "2"], k=0, test_frac=0)


def test_groups_csv(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("file,patient,age\nscan_0001.jpg,P1,40\nscan_0002,P1,40\nscan_0003.png,P2,51\n")
    table, column = read_groups_csv(p)
    assert column == "patient"
    assert table["scan_0001.jpg"] == table["scan_0001"] == table["scan_0002"] == "P1"
    assert table["scan_0003"] == "P2"
    assert read_groups_csv(p, "age")[0]["scan_0003"] == "51"
    two = tmp_path / "two.csv"
    two.write_text("source,subject\na.jpg,S1\n")
    assert read_groups_csv(two) == ({"a.jpg": "S1", "a": "S1"}, "subject")
    amb = tmp_path / "amb.csv"
    amb.write_text("source,x,y\na.jpg,1,2\n")
    with pytest.raises(ValueError, match="cannot tell the group column"):
        read_groups_csv(amb)
    nosrc = tmp_path / "nosrc.csv"
    nosrc.write_text("name,patient\na,1\n")
    with pytest.raises(ValueError, match="want a column named"):
        read_groups_csv(nosrc)
    clash = tmp_path / "clash.csv"
    clash.write_text("source,patient\na.jpg,1\na.jpg,2\n")
    with pytest.raises(ValueError, match="group"):
        read_groups_csv(clash)
