"""models/jobs.py: the process runner behind --folds-parallel (slots, devices, threads,
failures) and the --only job names. The runner's end-to-end check (children equal the
sequential run) is tests/test_train_yolo3.py::test_folds_in_parallel_processes_match_the_sequential_run."""
import sys

import pytest

from models import jobs

SHOW = "import os, sys; print(os.environ.get('OMP_NUM_THREADS'), sys.argv[1:])"


def test_children_run_in_slots_with_their_device_or_threads(tmp_path):
    commands = [(f"job{i}", [sys.executable, "-c", SHOW, str(i)], tmp_path / f"{i}.txt")
                for i in range(3)]
    jobs.run_processes(commands, parallel=2, gpus="", threads=3, poll_s=0.05)
    for i in range(3):
        assert (tmp_path / f"{i}.txt").read_text().strip() == f"3 ['{i}', '--gpus', '']"
    jobs.run_processes(commands[:2], parallel=2, gpus="4,5", poll_s=0.05)
    gpus = sorted((tmp_path / f"{i}.txt").read_text().splitlines()[-1] for i in range(2))
    assert [g.split("'--gpus', ")[1] for g in gpus] == ["'4']", "'5']"]


def test_failed_children_are_named_after_all_ended(tmp_path):
    commands = [("bad", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "b.txt"),
                ("good", [sys.executable, "-c", "print('ok')"], tmp_path / "g.txt")]
    with pytest.raises(RuntimeError, match=r"\('bad', 3\)"):
        jobs.run_processes(commands, parallel=1, poll_s=0.05)
    assert (tmp_path / "g.txt").read_text().strip() == "ok"


def test_job_names():
    assert jobs.job_name((1, 0)) == "set1_fold0" and jobs.job_name("final") == "final"
