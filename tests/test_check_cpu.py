"""check_cpu.py: the README's CPU checks in one command. The lines of the three checks beyond
the demo (eval.acceptance), the parsers against real pytest and benchmark output, a real child
process timed and logged, and the runner's bookkeeping with children that write what the
real scripts write (a failed or stopped check loses nothing, --resume runs only the rest)."""
import json
import sys
from pathlib import Path

import pytest

import check_cpu
from eval import acceptance

ROOT = Path(__file__).resolve().parents[1]


def _held(lines):
    return [line["held"] for line in lines]


def test_real_size_lines_at_their_limits():
    at = {"test_map_voc12": acceptance.MIN_REAL_SIZE_MAP}
    assert _held(acceptance.check_real_size(at, acceptance.REAL_SIZE_WALL_S)) == [True, True]
    below = {"test_map_voc12": acceptance.MIN_REAL_SIZE_MAP - 1e-4}
    assert _held(acceptance.check_real_size(below, acceptance.REAL_SIZE_WALL_S + 1)) == \
        [False, False]
    assert _held(acceptance.check_real_size({}, None)) == [None, None]
    assert acceptance.REAL_SIZE_WALL_S == 2400 and acceptance.MIN_REAL_SIZE_MAP == 0.15


def test_loop_ratio_line_at_its_limit():
    assert _held(acceptance.check_loop_ratio(0.90)) == [True]  # 0.9 in binary counts as at it
    assert _held(acceptance.check_loop_ratio(0.899)) == [False]
    assert _held(acceptance.check_loop_ratio(None)) == [None]
    assert _held(acceptance.check_loop_ratio(float("nan"))) == [None]


@pytest.mark.parametrize("code, passed, failed, held", [
    (0, 1851, 0, True),
    (1, 1850, 1, False),
    (0, 0, 0, False),        # nothing ran is not a green suite
    (2, None, None, False),  # pytest stopped before its summary (collection error, a crash)
    (None, None, None, None),
])
def test_suite_line(code, passed, failed, held):
    assert _held(acceptance.check_suite(code, passed, failed)) == [held]


def test_parse_ratio_reads_the_last_ratio_line():
    out = ("real loop, a loader thread: 160.00 img/s, ratio 0.921 (runs [1], ratios [1])\n"
           "ratio: 0.880\nbest: thread\nratio: 0.921\n")
    assert check_cpu.parse_ratio(out) == pytest.approx(0.921)
    assert check_cpu.parse_ratio("real loop ..., ratio 0.9\n") is None  # not the last line's form


@pytest.mark.parametrize("text, counts", [
    ("........ [100%]\n8 passed in 1.03s\n", (8, 0)),
    ("FF. [100%]\n=== short test summary info ===\n2 failed, 1 passed, 3 warnings in 0.5s\n",
     (1, 2)),
    ("E\n1 passed, 2 errors in 0.20s\n", (1, 2)),
    ("ERROR collecting tests/test_x.py\n!!! Interrupted: 1 error during collection !!!\n",
     (None, None)),
    ("", (None, None)),
])
def test_parse_pytest_counts(text, counts):
    assert check_cpu.parse_pytest_counts(text) == counts


def test_run_child_times_and_logs_a_real_process(tmp_path, capsys):
    log = tmp_path / "c.log"
    # 200 MB touched, so the peak memory reads above it (Python alone is ~10 MB)
    code, wall, peak = check_cpu.run_child(
        [sys.executable, "-c", "import sys, time; b = bytearray(200 << 20); b[::4096] = "
                               "b'x' * len(b[::4096]); print('to the log'); time.sleep(0.3); "
                               "sys.exit(3)"], log, quiet=True)
    assert code == 3 and 0.3 <= wall < 30
    if hasattr(__import__("os"), "wait4"):
        assert 200 <= peak < 1000
    text = log.read_text()
    assert "to the log" in text and "[exit status 3," in text
    assert "to the log" not in capsys.readouterr().out  # quiet: the log only


@pytest.mark.parametrize("start, end, want", [
    ((100.0, 5000.0), (110.0, 5010.0), 10.0),  # the clocks agree
    ((100.0, 5000.0), (110.0, 5028.0), 28.0),  # paused 18 s: the wall clock stepped forward
    ((100.0, 5000.0), (110.0, 4990.0), 10.0),  # the wall clock stepped back 20 s
])
def test_a_check_is_timed_by_the_larger_of_the_two_clocks(start, end, want):
    assert check_cpu.elapsed_s(start, end) == pytest.approx(want)


def test_run_child_counts_a_pause_the_monotonic_clock_missed(tmp_path, monkeypatch):
    """A VM paused during the child: its monotonic clock stops, its wall clock then steps
    forward; the check counts what a stopwatch would."""
    real = check_cpu.time
    calls = {"n": 0}

    class Clock:
        monotonic = staticmethod(real.monotonic)

        @staticmethod
        def time():
            calls["n"] += 1
            return real.time() + (18.0 if calls["n"] > 1 else 0.0)  # stepped after the start

    monkeypatch.setattr(check_cpu, "time", Clock)
    code, wall, _ = check_cpu.run_child([sys.executable, "-c", "pass"], tmp_path / "c.log",
                                        quiet=True)
    assert code == 0 and 18.0 <= wall < 48.0
    assert "s, peak RSS" in (tmp_path / "c.log").read_text()


def test_a_real_pytest_child_with_a_failing_test_breaks_the_suite_line(tmp_path):
    suite = tmp_path / "test_tiny.py"
    suite.write_text("def test_a():\n    assert True\n\n\ndef test_b():\n    assert 1 == 2\n")
    args = check_cpu.parse_args(["--only", "tests", "--pytest-args", str(suite), "--quiet",
                                 "--out", str(tmp_path / "runs"), "--name", "r"])
    summary = check_cpu.main(args)
    tests = summary["checks"]["tests"]
    assert (tests["passed"], tests["failed"], tests["exit_status"]) == (1, 1, 1)
    assert summary["verdict"] == "broken"
    assert "1 failed, 1 passed" in (tmp_path / "runs" / "r" / "tests.log").read_text()


class FakeChildren:
    """Stands in for the scripts: writes what each writes (a run folder with summary.json
    under --out, a ratio line, a pytest summary) and returns a chosen exit status and wall."""

    def __init__(self, demo=None, train=None, ratio="0.93", suite="5 passed in 1.0s",
                 fail=(), stop=None):
        self.demo = demo if demo is not None else {
            "elapsed_s": 800.0, "data": {"test": 68},
            "detector": {"test_map_voc12": 0.9, "cv_map_mean": 0.87, "precision": 0.8,
                         "recall": 0.94},
            "two_stage": {"precision": 0.93, "recall": 0.9}, "filter": {"test_auc": 0.95}}
        self.train = train if train is not None else {"test_map_voc12": 0.97,
                                                      "final_epochs": 300}
        self.ratio, self.suite, self.fail, self.stop = ratio, suite, set(fail), stop
        self.calls = []

    def __call__(self, argv, log_path, quiet=False):
        argv = [str(a) for a in argv]
        what = Path(argv[1]).stem if argv[1] != "-m" else argv[2]
        self.calls.append(what)
        if what == self.stop:
            raise KeyboardInterrupt  # the user stopped the run here
        out = ""
        if what in ("demo", "train_yolo3") and what not in self.fail:
            folder = Path(argv[argv.index("--out") + 1]) / f"run{len(self.calls)}"
            folder.mkdir(parents=True)
            summary = self.demo if what == "demo" else self.train
            (folder / "summary.json").write_text(json.dumps(summary))
        elif what == "prepare_data" and what not in self.fail:
            data = Path(argv[argv.index("--out") + 1])
            data.mkdir(parents=True)
            (data / "splits.json").write_text("{}")
        elif what == "bench_train_loop":
            out = f"best: 0\nratio: {self.ratio}\n"
        elif what == "pytest":
            out = self.suite + "\n"
        with open(log_path, "a") as log:
            log.write(out)
        return check_cpu.Child(1 if what in self.fail else 0, 100.0, 512.0)


def _args(tmp_path, *extra):
    return check_cpu.parse_args(["--out", str(tmp_path), "--name", "c", "--quiet", *extra])


def test_every_check_judged_by_its_lines_with_the_wall_timed_outside(tmp_path):
    fake = FakeChildren()
    summary = check_cpu.main(_args(tmp_path), child=fake)
    assert fake.calls == ["demo", "datasets.phantom", "prepare_data", "train_yolo3",
                          "bench_train_loop", "pytest"]
    lines = {line["line"]: line for line in summary["lines"]}
    assert len(lines) == 7 + 2 + 1 + 1
    assert lines["wall time"]["value"] == 100.0  # the child's wall, not the summary's 800
    assert lines["real-size test mAP"]["value"] == pytest.approx(0.97)
    assert lines["loop ratio"]["value"] == pytest.approx(0.93)
    assert summary["verdict"] == "held"
    recorded = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert recorded["verdict"] == "held" and recorded["checks"]["real_size"]["epochs"] == 300


def test_a_failed_child_breaks_its_lines_and_the_others_still_run(tmp_path):
    fake = FakeChildren(fail={"demo", "train_yolo3"}, ratio="0.85")
    summary = check_cpu.main(_args(tmp_path), child=fake)
    checks = summary["checks"]
    assert set(_held(checks["demo"]["lines"])) == {False}  # no summary from a failed demo
    assert _held(checks["real_size"]["lines"]) == [True, False]  # in time, but no model
    assert _held(checks["bench"]["lines"]) == [False]
    assert _held(checks["tests"]["lines"]) == [True]
    assert summary["verdict"] == "broken"


def test_a_failed_preparation_stops_real_size_only(tmp_path):
    fake = FakeChildren(fail={"prepare_data"})
    checks = check_cpu.main(_args(tmp_path, "--only", "real_size,tests"), child=fake)["checks"]
    assert "train_yolo3" not in fake.calls and checks["real_size"]["failed_step"] == "prepare"
    assert _held(checks["real_size"]["lines"]) == [False, False]
    assert _held(checks["tests"]["lines"]) == [True]


def test_a_stopped_run_keeps_its_checks_and_resume_runs_the_rest(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        check_cpu.main(_args(tmp_path), child=FakeChildren(stop="bench_train_loop"))
    run_dir = tmp_path / "c"
    assert set(json.loads((run_dir / "checks.json").read_text())) == {"demo", "real_size"}
    fake = FakeChildren()
    summary = check_cpu.main(check_cpu.parse_args(["--resume", str(run_dir), "--quiet"]),
                             child=fake)
    assert fake.calls == ["bench_train_loop", "pytest"]  # demo and real_size not run again
    assert set(summary["checks"]) == set(check_cpu.CHECKS) and summary["verdict"] == "held"


def test_real_size_stopped_in_training_resumes_on_its_prepared_data(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        check_cpu.main(_args(tmp_path, "--only", "real_size"),
                       child=FakeChildren(stop="train_yolo3"))
    again = FakeChildren()
    summary = check_cpu.main(check_cpu.parse_args(["--resume", str(tmp_path / "c"),
                                                   "--quiet"]), child=again)
    assert again.calls == ["train_yolo3"]  # the pictures and their preparation are kept
    assert _held(summary["checks"]["real_size"]["lines"]) == [True, True]


def test_unknown_check_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        check_cpu.parse_args(["--only", "demo,speed"])
    assert e.value.code == 2 and "speed" in capsys.readouterr().err


def test_the_real_size_command_is_the_readme_line():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert " ".join(check_cpu.REAL_SIZE_TRAIN) in text
