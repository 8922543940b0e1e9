"""bench/bench_learning.py at tiny settings: both sides train the same number of iterations
and print their lines, settings first and ``ratio:`` last. No accuracy is asserted: two
iterations on twelve images learn nothing."""
import math
import re

import pytest

from bench import bench_learning

pytestmark = pytest.mark.slow


def test_both_sides_run_the_same_iterations_and_print_their_lines(tiny_detection_data,
                                                                  tmp_path, capsys):
    data, splits = tiny_detection_data
    out = bench_learning.main(bench_learning.parse_args(
        ["--data", str(data), "--epochs", "2", "--work", str(tmp_path / "work")]))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("settings: ") and lines[1].startswith("versions: ")
    assert "cpu " in lines[1] and "mxnet 1." in lines[1]
    side = {}
    for name in ("pipeline", "bare"):
        row = next(ln for ln in lines if ln.startswith(f"{name}: "))
        m = re.fullmatch(rf"{name}: mAP VOC12 (\S+), wall (\S+) s, iterations (\d+), "
                         r"last-epoch loss \S+", row)
        assert m, row
        side[name] = (float(m.group(1)), int(m.group(3)))
    # 8 training ids in batches of the recipe's 8: one iteration per epoch, two epochs
    assert side["pipeline"][1] == side["bare"][1] == 2 == out["bare"]["iterations"]
    assert out["pipeline"]["epoch_iters"] == [1, 1]
    assert len(splits["train"]) == 8
    last = lines[-1]
    assert last.startswith("ratio: ")
    ratio = float(last.split()[1])
    assert math.isnan(ratio) or ratio >= 0
    assert len(list((tmp_path / "work" / "runs").iterdir())) == 1  # the pipeline's run folder
