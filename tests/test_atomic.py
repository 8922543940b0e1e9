"""Atomic file writes (infra/atomic.py): all or nothing, and the permissions a plain
``open()`` / ``os.mkdir`` would give under the user's umask.

The reference is the operating system itself: under each umask the test first creates a
file with ``open(..., "w")`` and a folder with ``os.mkdir`` and asks every writer for the
same modes (0644 / 0755 under umask 0022, 0600 / 0700 under 0077). The umask is set for
the test only and restored afterwards.
"""
import argparse
import json
import os
import stat

import numpy as np
import pytest

import prepare_data
from datasets.phantom import generator as phantom
from eval.detection_io import write_cartucho
from infra import runs
from infra.atomic import (atomic_save, atomic_write_bytes, atomic_write_json, atomic_write_text,
                          current_umask, make_temp_dir, plain_file_mode)
from models.checkpoint import Checkpointer

UMASKS = [0o022, 0o077]


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=UMASKS, ids=lambda m: f"umask{m:04o}")
def plain(request, tmp_path):
    """Under the parametrised umask: the modes a plain open() and os.mkdir() give."""
    old = os.umask(request.param)
    try:
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        os.mkdir(tmp_path / "plain_dir")
        want = {"file": mode(tmp_path / "plain.txt"), "dir": mode(tmp_path / "plain_dir")}
        assert want == {0o022: {"file": 0o644, "dir": 0o755},
                        0o077: {"file": 0o600, "dir": 0o700}}[request.param]
        yield dict(want, umask=request.param)
    finally:
        os.umask(old)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = atomic_write_json(tmp_path / "a" / "x.json", {"v": 1})
    assert json.loads(p.read_text()) == {"v": 1}
    assert sorted(f.name for f in p.parent.iterdir()) == ["x.json"]


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    p = atomic_write_text(tmp_path / "x.json", "old\n")
    with pytest.raises(TypeError):
        atomic_write_json(p, {"v": object()})
    assert p.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["x.json"]

    def broken(name):
        with open(name, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_save(broken, p)
    assert p.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["x.json"]


def test_new_files_get_the_mode_of_a_plain_open(plain, tmp_path):
    assert current_umask() == plain["umask"]
    out = tmp_path / "out"
    written = [atomic_write_bytes(out / "a.bin", b"\x00\x01"),
               atomic_write_text(out / "b.txt", "b\n"),
               atomic_write_json(out / "c.json", {"c": np.float32(1.5)})]
    for p in written:
        assert mode(p) == plain["file"], p.name
    assert mode(out) == plain["dir"]  # made by mkdir(parents=True)
    assert plain_file_mode(out / "new") == plain["file"]


def test_replaced_files_keep_their_mode_as_open_does(plain, tmp_path):
    p = atomic_write_text(tmp_path / "shared.csv", "a\n")
    os.chmod(p, 0o640)
    atomic_write_text(p, "b\n")
    assert mode(p) == 0o640 and p.read_text() == "b\n"
    atomic_save(lambda name: open(name, "w").close(), p)
    assert mode(p) == 0o640


def test_atomic_save_gives_the_plain_mode_whatever_the_writer_chose(plain, tmp_path):
    def like_open(name):  # what MXNet's writers do (fopen / open)
        with open(name, "wb") as f:
            f.write(b"params")

    def like_mkstemp(name):  # a writer creating its file private
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"states")
        os.close(fd)

    for writer in (like_open, like_mkstemp):
        p = atomic_save(writer, tmp_path / f"{writer.__name__}.params")
        assert mode(p) == plain["file"], writer.__name__
    assert sorted(os.listdir(tmp_path)) == ["like_mkstemp.params", "like_open.params",
                                            "plain.txt", "plain_dir"]


def test_temp_folders_get_the_mode_of_mkdir(plain, tmp_path):
    d = make_temp_dir(tmp_path, prefix=".x.", suffix=".tmp")
    assert os.path.basename(d).startswith(".x.") and d.endswith(".tmp")
    assert mode(d) == plain["dir"] and not os.listdir(d)
    assert make_temp_dir(tmp_path) != make_temp_dir(tmp_path)


class _FakeNet:
    """Stands in for a Gluon block: MXNet's save_parameters opens the name it is given."""

    def save_parameters(self, name):
        with open(name, "wb") as f:
            f.write(b"weights")


def test_run_records_checkpoints_and_cartucho_folders(plain, tmp_path):
    p = argparse.ArgumentParser()
    runs.add_run_arguments(p, "unit")
    with runs.start("unit", p.parse_args(["--out", str(tmp_path / "runs"), "--name", "r"])) as run:
        ckpt = Checkpointer(run.dir / "checkpoints")
        ckpt.save_last(_FakeNet(), None, {"epoch": 0})
        ckpt.save_best(_FakeNet(), 0, "val_auc", 0.5)
        write_cartucho(run.dir, ["lesion"],
                       det={"im1": {"boxes": np.array([[1.0, 2.0, 3.0, 4.0]]),
                                    "scores": np.array([0.5]), "labels": np.array([0])}})
        run.finish({"ok": True})
    files = ["args.json", "env.json", "log.txt", "summary.json", "checkpoints/last.params",
             "checkpoints/last.json", "checkpoints/best.params", "checkpoints/best.json",
             "detection-results/im1.txt"]
    for rel in files:
        assert mode(run.dir / rel) == plain["file"], rel
    for rel in ("", "checkpoints", "detection-results"):
        assert mode(run.dir / rel) == plain["dir"], rel or "run folder"
    leftovers = [q.name for q in run.dir.rglob("*") if q.name.startswith(".")]
    assert not leftovers


def test_prepared_data_folder(plain, tmp_path):
    phantom.generate(tmp_path / "raw", 4, seed=0, progress=False)
    prepare_data.main(prepare_data.parse_args(
        ["--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "data"), "--folds", "2",
         "--test-frac", "0.25", "--no-progress"]))
    data = tmp_path / "data"
    files = [q for q in data.rglob("*") if q.is_file()]
    assert {q.suffix for q in files} >= {".xml", ".jpg", ".json", ".csv", ".txt", ".rec"}
    for q in files:
        assert mode(q) == plain["file"], q.relative_to(data)
    for q in [data] + [q for q in data.rglob("*") if q.is_dir()]:
        assert mode(q) == plain["dir"], q.relative_to(tmp_path)
