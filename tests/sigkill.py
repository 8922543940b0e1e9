"""Start a trainer and SIGKILL it once an epoch row is on disk: the resume tests of both
trainers (tests/test_train_yolo3.py, tests/test_train_filter.py)."""
import os
import signal
import subprocess
import time

from infra import runs


def epochs_recorded(metrics_csv):
    """Epochs with a row in ``metrics_csv`` (none when it does not exist yet)."""
    if not metrics_csv.exists():
        return []
    return [int(r["epoch"]) for r in runs.MetricsCSV(metrics_csv).rows()]


def kill_after_first_row(cmd, cwd, metrics_csv, timeout=120.0):
    """Run ``cmd`` in its own process group and kill the group with SIGKILL as soon as
    ``metrics_csv`` holds a row (its checkpoint is saved before it, so the resume starts from
    a checkpoint; a kill between the two is tests/test_epochs.py's). Returns the epochs
    recorded at the kill."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + timeout
        while not epochs_recorded(metrics_csv):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, f"no metrics row within {timeout:.0f} s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    return epochs_recorded(metrics_csv)
