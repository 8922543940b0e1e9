"""Run folders, metrics CSV (infra/runs.py)."""
import argparse
import json

import pytest

from infra import runs


def _args(tmp_path, **kw):
    p = argparse.ArgumentParser()
    runs.add_run_arguments(p, "unit")
    argv = ["--out", str(tmp_path), "--name", "r"]
    for k, v in kw.items():
        argv += [f"--{k}", str(v)]
    return p.parse_args(argv)


def test_new_run_never_overwrites(tmp_path):
    a = runs.start("unit", _args(tmp_path))
    b = runs.start("unit", _args(tmp_path))
    assert a.dir != b.dir and b.dir.name == "r-2"
    for d in (a.dir, b.dir):
        rec = json.loads((d / "args.json").read_text())
        assert rec["script"] == "unit" and rec["options"]["name"] == "r"
        env = json.loads((d / "env.json").read_text())
        assert "numpy" in env["packages"] and env["python"]
        assert (d / "log.txt").exists()


def test_resume_requires_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        runs.start("unit", _args(tmp_path, resume=tmp_path / "nope"))


def test_metrics_csv_rows_truncate_and_new_columns(tmp_path):
    m = runs.MetricsCSV(tmp_path / "metrics.csv")
    for e in range(4):
        row = {"epoch": e, "loss": 1.0 / (e + 1)}
        if e % 2 == 1:
            row["val_map"] = 0.1 * e  # validation only every other epoch
        m.append(row)
    rows = m.rows()
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert rows[0]["val_map"] == "" and float(rows[3]["val_map"]) == pytest.approx(0.3)
    assert m.truncate_after(1) == 2
    assert [int(r["epoch"]) for r in m.rows()] == [0, 1]
    m.append({"epoch": 2, "loss": 0.5})
    assert [int(r["epoch"]) for r in m.rows()] == [0, 1, 2]


def test_subrun_and_finish(tmp_path):
    run = runs.start("unit", _args(tmp_path))
    child = run.subrun("cv/set0_fold1")
    child.metrics.append({"epoch": 0, "loss": 1.0})
    assert (run.dir / "cv" / "set0_fold1" / "metrics.csv").exists()
    run.finish({"ok": True})
    assert json.loads((run.dir / "summary.json").read_text()) == {"ok": True}
