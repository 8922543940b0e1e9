"""Run folders, metrics CSV (infra/runs.py)."""
import argparse
import json
import logging
import os

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
        assert env["speed_variables"] == {k: os.environ.get(k) for k in runs.SPEED_VARIABLES}
        assert "cpu_model" in env
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


def _file_handlers():
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def test_a_run_writes_its_log_only_while_open(tmp_path):
    before = _file_handlers()
    other = logging.getLogger("unit.other")
    with runs.start("unit", _args(tmp_path)) as run:
        other.info("inside the run")
        assert len(_file_handlers()) == len(before) + 1
    other.info("after the run")
    assert _file_handlers() == before
    text = (run.dir / "log.txt").read_text()
    assert "unit run folder" in text and "inside the run" in text
    assert "after the run" not in text


def test_nested_runs_the_outer_log_encloses_the_inner(tmp_path):
    log = logging.getLogger("unit.nested")
    with runs.start("outer", _args(tmp_path / "o")) as outer:
        log.info("outer before")
        with runs.start("inner", _args(tmp_path / "i")) as inner:
            log.info("inner line")
        log.info("outer after")
    inner_text = (inner.dir / "log.txt").read_text()
    outer_text = (outer.dir / "log.txt").read_text()
    assert "inner line" in inner_text
    assert "outer before" not in inner_text and "outer after" not in inner_text
    for line in ("outer before", "inner run folder", "inner line", "outer after"):
        assert line in outer_text, line


def test_a_failure_is_recorded_in_the_failing_runs_log_once(tmp_path):
    before = _file_handlers()
    with runs.start("outer", _args(tmp_path / "o")) as outer:
        with pytest.raises(ZeroDivisionError):
            with runs.start("inner", _args(tmp_path / "i")) as inner:
                1 / 0
    assert _file_handlers() == before
    inner_text = (inner.dir / "log.txt").read_text()
    assert "ERROR run: run failed" in inner_text and "ZeroDivisionError" in inner_text
    # The outer run caught it: no failure of its own, and not a copy of the inner one.
    assert "run failed" not in (outer.dir / "log.txt").read_text()


def test_a_second_run_on_the_same_log_does_not_take_the_handler(tmp_path):
    with runs.start("unit", _args(tmp_path)) as run:
        again = runs.Run(run.dir, log_file=run.dir / "log.txt")
        again.close()  # does not detach the first run's handler
        logging.getLogger("unit.same").info("still logged")
    assert "still logged" in (run.dir / "log.txt").read_text()
