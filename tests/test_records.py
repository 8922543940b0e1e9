"""`.lst` lines and the one record file (im2rec_tools/) against MXNet's and GluonCV's tools.

References: ``mxnet/tools/im2rec.py --pack-label --pass-through`` must produce the same
``.rec`` bytes from our ``.lst``; ``gluoncv.data.RecordFileDetection`` must give back the
VOC boxes within 1 px.
"""
import csv
import os
import subprocess
import sys
from pathlib import Path

import cv2
import mxnet
import numpy as np
import pytest

from datasets.prepared.images import write_jpeg
from datasets.prepared.voc import read_voc, write_voc
from im2rec_tools import lst, records

CLASSES = ["lesion"]


def make_data(root, n=5, seed=0, shuffle_idx=False):
    """A tiny prepared folder: JPEGImages, Annotations, manifest.csv, records/all.lst."""
    rng = np.random.default_rng(seed)
    rows, lines = [], []
    indices = list(range(n))
    if shuffle_idx:                     # .lst indices need not be 0..n-1 in file order
        indices = [int(i) for i in rng.permutation(np.arange(10, 10 + 3 * n, 3))]
    for k, idx in enumerate(indices):
        sid = f"img{k}_L"
        w, h = int(rng.integers(60, 120)), int(rng.integers(50, 100))
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        write_jpeg(root / "JPEGImages" / f"{sid}.jpg", img)
        objs = []
        for _ in range(int(rng.integers(1, 4))):
            x1, y1 = rng.uniform(0, w - 12), rng.uniform(0, h - 12)
            x2, y2 = rng.uniform(x1 + 4, w), rng.uniform(y1 + 4, h)
            objs.append({"name": "lesion", "box": [round(v, 2) for v in (x1, y1, x2, y2)],
                         "difficult": int(rng.random() < 0.3)})
        write_voc(root / "Annotations" / f"{sid}.xml", f"{sid}.jpg", w, h, objs)
        voc = read_voc(root / "Annotations" / f"{sid}.xml")
        lines.append(lst.lst_line(idx, voc["width"], voc["height"], voc["objects"],
                                  f"JPEGImages/{sid}.jpg", CLASSES))
        rows.append({"id": sid, "rec_idx": idx})
    lst.write_lst(root / "records" / "all.lst", lines)
    with open(root / "manifest.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["id", "rec_idx"])
        wr.writeheader()
        wr.writerows(rows)
    return rows


def test_lst_line_format():
    line = lst.lst_line(7, 200, 100, [{"name": "lesion", "box": [20, 10, 120, 60], "difficult": 1},
                                      {"name": "lesion", "box": [0, 0, 200, 100]}],
                        "JPEGImages/a_L.jpg", CLASSES)
    assert line.split("\t") == ["7", "4", "6", "200", "100", "0", "0.1", "0.1", "0.6", "0.6", "1",
                                "0", "0", "0", "1", "1", "0", "JPEGImages/a_L.jpg"]
    idx, label, rel = lst.parse_lst_line(line)
    w, h, objs = lst.decode_label(label)
    assert (idx, rel, w, h) == (7, "JPEGImages/a_L.jpg", 200, 100)
    assert objs == [[0, 0.1, 0.1, 0.6, 0.6, 1], [0, 0, 0, 1, 1, 0]]


@pytest.mark.parametrize("objects,match", [
    ([], "at least one object"),
    ([{"name": "tumour", "box": [1, 1, 5, 5]}], "not in"),
    ([{"name": "lesion", "box": [5, 1, 5, 5]}], "positive area"),
    ([{"name": "lesion", "box": [1, 1, 250, 5]}], "not inside"),
    ([{"name": "lesion", "box": [1, float("nan"), 3, 5]}], "not finite"),
])
def test_lst_line_refuses_what_im2rec_or_gluoncv_would_mangle(objects, match):
    with pytest.raises(ValueError, match=match):
        lst.lst_line(0, 200, 100, objects, "a.jpg", CLASSES)
    with pytest.raises(ValueError, match="tabs"):
        lst.lst_line(0, 200, 100, [{"name": "lesion", "box": [1, 1, 5, 5]}], "a\tb.jpg", CLASSES)


def test_same_bytes_as_mxnet_im2rec(tmp_path):
    make_data(tmp_path, n=4)
    n = records.pack_records(tmp_path / "records" / "all.lst", tmp_path)
    assert n == 4
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "all.lst").write_bytes((tmp_path / "records" / "all.lst").read_bytes())
    im2rec = Path(mxnet.__file__).parent / "tools" / "im2rec.py"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    subprocess.run([sys.executable, str(im2rec), str(ref / "all"), str(tmp_path),
                    "--pack-label", "--pass-through", "--num-thread", "1"],
                   check=True, capture_output=True, env=env, timeout=120)
    assert (ref / "all.rec").read_bytes() == (tmp_path / "records" / "all.rec").read_bytes()
    assert (ref / "all.idx").read_text() == (tmp_path / "records" / "all.idx").read_text()


def test_gluoncv_reads_voc_boxes_within_a_pixel_and_ids_by_header(tmp_path):
    rows = make_data(tmp_path, n=6, seed=1, shuffle_idx=True)
    records.pack_records(tmp_path / "records" / "all.lst", tmp_path)
    ds, ids = records.load_detection_records(tmp_path)
    assert len(ds) == len(ids) == 6 and sorted(ids) == sorted(r["id"] for r in rows)
    for i in range(len(ds)):
        img, label = ds[i]
        voc = read_voc(tmp_path / "Annotations" / f"{ids[i]}.xml")
        assert img.shape == (voc["height"], voc["width"], 3)
        assert label.shape == (len(voc["objects"]), 6)
        assert np.abs(label[:, :4] - np.array([o["box"] for o in voc["objects"]])).max() <= 1.0
        assert label[:, 4].tolist() == [0] * len(voc["objects"])
        assert label[:, 5].tolist() == [o["difficult"] for o in voc["objects"]]
        # pixels are the JPEG we wrote (RGB from mxnet, BGR from OpenCV)
        bgr = cv2.imread(str(tmp_path / "JPEGImages" / f"{ids[i]}.jpg"))
        assert np.array_equal(img.asnumpy()[:, :, ::-1], bgr)


def test_subset_selects_by_id(tmp_path):
    make_data(tmp_path, n=5, seed=2)
    records.pack_records(tmp_path / "records" / "all.lst", tmp_path)
    ds, ids = records.load_detection_records(tmp_path)
    wanted = [ids[3], ids[0]]
    idx = records.subset_indices(ids, wanted)
    assert idx == [3, 0]
    sub = records.subset(ds, idx)
    assert len(sub) == 2
    assert np.array_equal(sub[0][1], ds[3][1]) and np.array_equal(sub[1][1], ds[0][1])
    with pytest.raises(KeyError, match="not in the record file"):
        records.subset_indices(ids, ["nope"])


def test_failed_pack_leaves_previous_files(tmp_path):
    make_data(tmp_path, n=3, seed=3)
    lst_path = tmp_path / "records" / "all.lst"
    records.pack_records(lst_path, tmp_path)
    before = (tmp_path / "records" / "all.rec").read_bytes()
    os.remove(next((tmp_path / "JPEGImages").glob("*.jpg")))
    with pytest.raises(OSError):
        records.pack_records(lst_path, tmp_path)
    assert (tmp_path / "records" / "all.rec").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "records").iterdir()) == ["all.idx", "all.lst",
                                                                       "all.rec"]
