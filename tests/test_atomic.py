"""Atomic file writes (infra/atomic.py)."""
import json

from infra.atomic import atomic_write_json


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = atomic_write_json(tmp_path / "a" / "x.json", {"v": 1})
    assert json.loads(p.read_text()) == {"v": 1}
    assert sorted(f.name for f in p.parent.iterdir()) == ["x.json"]
