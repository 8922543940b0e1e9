"""bench/bench_map.py runs both baselines on a tiny set and leaves a user's checkout untouched.

We do not ship Cartucho/mAP's main.py; the stand-in below has only its I/O contract (chdir to
its own folder, read input/ground-truth and input/detection-results, .temp_files, write
output/output.txt, print ``mAP = XX.XX%`` last) and scores with the bench's own loop.
"""
from pathlib import Path

import pytest

from bench import bench_map

ROOT = Path(__file__).resolve().parents[1]

STAND_IN = f'''import argparse, os, shutil, sys
p = argparse.ArgumentParser()
for flag in ("-na", "-np", "-q"):
    p.add_argument(flag, action="store_true")
p.parse_args()
os.chdir(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, {str(ROOT)!r})
from bench.bench_map import cartucho_loop_map
os.makedirs(".temp_files")
m, aps = cartucho_loop_map(os.path.join("input", "ground-truth"),
                           os.path.join("input", "detection-results"), temp_dir=".temp_files")
shutil.rmtree(".temp_files")
os.makedirs("output")
with open(os.path.join("output", "output.txt"), "w") as f:
    f.writelines(f"{{100 * ap:.2f}}% = {{c}} AP \\n" for c, ap in aps.items())
print(f"mAP = {{100 * m:.2f}}%")
'''


@pytest.mark.parametrize("with_main", [False, True])
def test_bench_runs_and_agrees(tmp_path, capsys, with_main):
    argv = ["--n", "60", "--repeat", "1", "--tmp", str(tmp_path), "--seed", "3"]
    if with_main:
        checkout = tmp_path / "user_checkout"
        (checkout / "input" / "ground-truth").mkdir(parents=True)
        (checkout / "input" / "ground-truth" / "theirs.txt").write_text("cat 1 2 3 4\n")
        (checkout / "main.py").write_text(STAND_IN)
        argv += ["--cartucho-main", str(checkout / "main.py")]
    out = bench_map.main(bench_map.parse_args(argv))
    text = capsys.readouterr().out
    assert out["ratio"] > 0 and text.splitlines()[-1].startswith("ratio: ")
    assert "MISMATCH" not in text
    assert ("main.py as shipped" if with_main else "algorithm re-written here") in text
    if with_main:
        assert "per class {'cyst'" in text  # per-class lines were read and compared
        assert sorted(p.name for p in checkout.rglob("*")) == [
            "ground-truth", "input", "main.py", "theirs.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name != "user_checkout"] == []


def test_generator_writes_inverted_boxes_and_a_detection_only_class(tmp_path):
    counts = bench_map.generate(tmp_path, 200, seed=1, inverted=0.05, extra_class="fridge")
    assert counts["inverted"] > 20 and counts["extra_class_detections"] > 10
    text = "".join(p.read_text() for p in (tmp_path / "detection-results").iterdir())
    assert text.count("fridge ") == counts["extra_class_detections"]
    gt = "".join(p.read_text() for p in (tmp_path / "ground-truth").iterdir())
    assert "fridge" not in gt
