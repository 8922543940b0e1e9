"""infra.process_clock: the process's age from /proc, against a wall clock measured outside."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra import process_clock

ROOT = Path(__file__).resolve().parents[1]
TICK_S = 0.01  # /proc's resolution (USER_HZ = 100 on Linux x86)


def _stat_line(comm, starttime):
    # fields 3..21 (19 of them), then field 22 = starttime, then a few more
    return f"4242 ({comm}) S " + " ".join(str(i) for i in range(4, 22)) + f" {starttime} 7 8 9"


@pytest.mark.parametrize("comm", ["python", "a b", "x) (y", "))"])
def test_starttime_is_field_22_whatever_the_command_name(comm):
    assert process_clock._starttime_ticks(_stat_line(comm, 123456)) == 123456


def test_age_is_uptime_less_the_start():
    assert process_clock.age_s(_stat_line("p", 50000), "1000.50 3000.00\n", 100) == \
        pytest.approx(500.5)
    # a start a tick "after" the uptime read (rounding) is age 0, never negative
    assert process_clock.age_s(_stat_line("p", 100001), "1000.00 1.0\n", 100) == 0.0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_child_knows_it_started_before_its_imports_and_sleep():
    code = ("import time; time.sleep(1.0); from infra import process_clock; "
            "print(time.time() - process_clock.started_at())")
    before = time.time()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wall = time.time() - before
    age = float(out.stdout)
    # it counts the interpreter's start and the sleep, and no more than the parent saw
    assert 1.0 <= age <= wall + 2 * TICK_S, (age, wall)


def test_without_proc_the_caller_starts_its_own_clock(monkeypatch):
    def no_proc(*args, **kwargs):
        raise FileNotFoundError(args[0])
    monkeypatch.setattr(process_clock, "open", no_proc, raising=False)
    assert process_clock.started_at() is None


def test_started_at_is_in_the_past_and_stable():
    first = process_clock.started_at()
    if first is None:
        pytest.skip("no /proc")
    assert first <= time.time()
    assert process_clock.started_at() == pytest.approx(first, abs=2 * TICK_S)


def test_not_before_bounds_the_start_from_below():
    first = process_clock.started_at()
    if first is None:
        pytest.skip("no /proc")
    assert process_clock.started_at(not_before=first + 10.0) == first + 10.0
    assert process_clock.started_at(not_before=first - 10.0) == \
        pytest.approx(first, abs=2 * TICK_S)


needs_proc_and_bash = pytest.mark.skipif(
    not Path("/proc/self/stat").exists() or shutil.which("bash") is None,
    reason="needs Linux /proc and bash")


def _printed_by_python_execd_after(sleep_s, code):
    """The numbers ``code`` prints in a Python that bash execs after ``sleep_s`` seconds, as
    ``bash -c "... && python ..."`` does: the pid, and /proc's start, are the shell's."""
    cmd = f"sleep {sleep_s} && exec {sys.executable} -c '{code}'"
    out = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return [float(x) for x in out.stdout.split()]


@needs_proc_and_bash
def test_a_shell_that_execs_the_interpreter_is_not_counted_past_not_before():
    fork_age, bounded_age = _printed_by_python_execd_after(2, (
        "import time; t = time.time(); from infra import process_clock; "
        "print(t - process_clock.started_at(), "
        "t - process_clock.started_at(not_before=t - 0.5))"))
    assert fork_age >= 2.0, fork_age
    assert bounded_age <= 0.5 + 2 * TICK_S, bounded_age


@needs_proc_and_bash
def test_the_demo_command_counts_at_most_an_interpreter_start_before_its_first_line():
    fork_age, command_age, since_first_line = _printed_by_python_execd_after(7, (
        "import time; import demo; from infra import process_clock; now = time.time(); "
        "print(now - process_clock.started_at(), now - demo.command_started_at(), "
        "now - demo.SCRIPT_STARTED)"))
    assert fork_age >= 7.0, fork_age
    assert command_age <= since_first_line + process_clock.MAX_INTERPRETER_START_S + TICK_S
    assert command_age >= since_first_line
