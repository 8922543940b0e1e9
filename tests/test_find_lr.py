"""find_lr.py on the tiny detection data: the LR range test's curve, plot and suggestion,
and what it does when the loss is never finite (no suggestion, said so, no plot).

The sweep's numbers are models/lr_range.py's (tested against analytic problems in
tests/test_lr_range.py); here the script's wiring is under test.
"""
import csv
import json

import pytest

import find_lr
from models import yolo_train

pytestmark = pytest.mark.slow
TINY = ["--fold", "0", "--num-iters", "6", "--warmup-iters", "1", "--min-lr", "1e-5",
        "--max-lr", "1e-2", "--network", "yolo3_mobilenet0.25_custom", "--data-shape", "64",
        "--batch-size", "2", "--num-workers", "0", "--gpus", ""]


def _run(data, out, name):
    return find_lr.main(find_lr.parse_args(["--data", str(data), "--out", str(out),
                                            "--name", name, *TINY]))


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_find_lr_writes_the_curve_and_a_suggestion(tiny_detection_data, tmp_path, capsys):
    summary = _run(tiny_detection_data[0], tmp_path, "lr")
    run = tmp_path / "lr"
    rows = _rows(run / "lr_range.csv")
    assert len(rows) == summary["steps"] and 2 <= len(rows) <= 6
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] == pytest.approx(1e-5) and all(b > a for a, b in zip(lrs, lrs[1:]))
    assert (run / "plots" / "lr_range.png").is_file()
    # A fresh net at lr 1e-5 has a finite loss, so there is always a suggestion: the
    # steepest-descent LR, or the min-loss LR / 10 when the loss never fell.
    assert summary["suggested_max_lr"] is not None, summary
    assert summary["suggested_max_lr"] in (summary["steepest_lr"], summary["min_loss_lr"] / 10)
    assert summary["suggested_base_lr"] == pytest.approx(summary["suggested_max_lr"] / 4)
    assert f"suggested max LR: {summary['suggested_max_lr']:.3g}" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text()) == summary


def test_find_lr_without_a_finite_loss_says_so(tiny_detection_data, tmp_path, capsys,
                                               monkeypatch):
    def nan_step_fn(*args, **kwargs):
        return lambda lr: float("nan")

    monkeypatch.setattr(yolo_train, "loss_step_fn", nan_step_fn)
    summary = _run(tiny_detection_data[0], tmp_path, "nan")
    run = tmp_path / "nan"
    assert summary["suggested_max_lr"] is None and summary["suggested_base_lr"] is None
    assert summary["steps"] == 1 and summary["stopped_early"]
    assert "non-finite" in summary["stop_reason"]
    assert "no suggestion: the loss was never finite" in capsys.readouterr().out
    assert len(_rows(run / "lr_range.csv")) == 1
    assert not (run / "plots" / "lr_range.png").exists()
