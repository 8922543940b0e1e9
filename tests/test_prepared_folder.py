"""The one reader of a prepared folder's tables (datasets/prepared/folder.py).

References: the csv and json modules on files written by hand here; the rule that no other
module reads manifest.csv or splits.json is checked on the source's string literals.
"""
import ast
import json
from pathlib import Path

import pytest

from datasets.prepared import folder

ROOT = Path(__file__).resolve().parents[1]
ROWS = [
    {"id": "scan_0001_L", "source": "scan_0001.jpg", "group": "p1", "side": "L",
     "x_offset": "12", "y_offset": "30", "width": "400", "height": "380", "n_boxes": "3"},
    {"id": "scan_0000_R", "source": "scan_0000.png", "group": "", "side": "R",
     "x_offset": "420", "y_offset": "28", "width": "398", "height": "380", "n_boxes": "1"},
]
SPLITS = {"seed": 0, "k": 2, "test": ["scan_0000_R"], "train": ["scan_0001_L"],
          "folds": [{"train": [], "val": ["scan_0001_L"]}, {"train": ["scan_0001_L"], "val": []}]}


@pytest.fixture()
def data(tmp_path):
    header = list(ROWS[0])
    lines = [",".join(header)] + [",".join(r[k] for k in header) for r in ROWS]
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "splits.json").write_text(json.dumps(SPLITS), encoding="utf-8")
    return tmp_path


def test_manifest_rows_are_strings_in_file_order(data):
    assert folder.read_manifest(data) == ROWS
    assert folder.read_manifest(str(data)) == ROWS


def test_manifest_by_id(data):
    by_id = folder.manifest_by_id(data)
    assert list(by_id) == ["scan_0001_L", "scan_0000_R"]
    assert by_id["scan_0000_R"] == ROWS[1]


def test_splits_as_written(data):
    assert folder.read_splits(data) == SPLITS


@pytest.mark.parametrize("reader, name", [(folder.read_manifest, "manifest.csv"),
                                          (folder.manifest_by_id, "manifest.csv"),
                                          (folder.read_splits, "splits.json")])
def test_a_missing_table_names_itself_and_the_command(tmp_path, reader, name):
    with pytest.raises(FileNotFoundError) as e:
        reader(tmp_path)
    assert str(tmp_path / name) in str(e.value)
    assert f"run prepare_data.py --out {tmp_path}" in str(e.value)


# The writer, and a check that --data is a prepared folder before anything is exported.
ALLOWED = {"datasets/prepared/folder.py", "prepare_data.py", "export_data.py"}


def _literal_uses(name):
    """Files outside tests/ whose code (not docstrings) holds the string literal ``name``."""
    found = set()
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("tests/", ".venv/")) or "/." in "/" + rel:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.Constant) and n.value == name for n in ast.walk(tree)):
            found.add(rel)
    return found


@pytest.mark.parametrize("name", ["manifest.csv", "splits.json"])
def test_no_other_module_reads_the_tables(name):
    assert _literal_uses(name) <= ALLOWED, (
        f"{sorted(_literal_uses(name) - ALLOWED)} name {name!r}: read it with "
        f"datasets.prepared.folder instead")
