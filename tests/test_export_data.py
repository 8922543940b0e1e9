"""export_data.py: YOLO txt and COCO JSON of a prepared folder, against trusted readers.

References: GluonCV's ``VOCDetection`` reading DATA/Annotations (the boxes every stage
uses), ``DATA/splits.json`` (the lists), PyYAML (what Ultralytics parses its data YAML with)
and pycocotools' ``COCO`` (what COCO trainers and evaluators load).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import export_data
import prepare_data
from tests.test_labelme_examples import LABELS, gluoncv_voc, write_examples

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    write_examples(root / "raw", np.random.default_rng(1))
    prepare_data.main(prepare_data.parse_args(
        ["--raw", str(root / "raw"), "--out", str(root / "data"), "--no-crop", "--no-split",
         "--folds", "2", "--test-frac", "0.2", "--seed", "1", "--no-progress"]))
    return root / "data"


def run(data, out, fmt, *extra):
    return export_data.main(export_data.parse_args(
        ["--data", str(data), "--out", str(out), "--format", fmt, *extra]))


def split_lists(data):
    sp = json.loads((data / "splits.json").read_text())
    lists = {"train": sp["train"], "test": sp["test"]}
    for k, f in enumerate(sp["folds"]):
        lists[f"fold{k}_train"], lists[f"fold{k}_val"] = f["train"], f["val"]
    return lists


def test_yolo_labels_lists_and_yaml(data, tmp_path):
    out = tmp_path / "yolo"
    summary = run(data, out, "yolo")
    voc = gluoncv_voc(data, LABELS)
    worst = 0.0
    for sid, ref in voc.items():
        h, w = cv2.imread(str(out / "images" / f"{sid}.jpg")).shape[:2]
        rows = np.loadtxt(out / "labels" / f"{sid}.txt", ndmin=2)
        cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
        back = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        assert rows[:, 0].tolist() == ref[:, 4].tolist(), sid        # classes, difficult kept
        worst = max(worst, float(np.abs(back - ref[:, :4]).max()))
        # the same file, not a copy
        assert os.stat(out / "images" / f"{sid}.jpg").st_ino == \
            os.stat(data / "JPEGImages" / f"{sid}.jpg").st_ino
    assert worst <= 1.0 and summary["linked"] == len(voc) and summary["copied"] == 0
    print(f"YOLO round trip: max error {worst:.4f} px")
    lists = split_lists(data)
    for name, ids in lists.items():
        lines = (out / f"{name}.txt").read_text().splitlines()
        assert lines == [f"./images/{i}.jpg" for i in ids], name
    for k in range(2):
        doc = yaml.safe_load((out / f"fold{k}.yaml").read_text())
        assert doc == {"path": str(out.resolve()), "train": f"fold{k}_train.txt",
                       "val": f"fold{k}_val.txt", "names": dict(enumerate(LABELS))}
    doc = yaml.safe_load((out / "train_test.yaml").read_text())
    assert (doc["train"], doc["val"]) == ("train.txt", "test.txt")
    # difficult boxes can be left out (YOLO has no flag for them)
    dropped = run(data, tmp_path / "yolo_drop", "yolo", "--difficult", "drop")
    n_difficult = sum(int(row[5]) for rows in voc.values() for row in rows)
    assert n_difficult > 0 and dropped["boxes"] - dropped["difficult"] == \
        sum(len(np.loadtxt(p, ndmin=2)) for p in (tmp_path / "yolo_drop" / "labels").glob("*.txt"))


def test_score_folders_hold_each_split_for_eval_detection(data, tmp_path):
    """A port that detects exactly the VOC boxes of the test ids scores mAP 100 % there."""
    from eval import detection as det_eval
    out = tmp_path / "scored"
    run(data, out, "coco")
    lists = split_lists(data)
    voc = gluoncv_voc(data, LABELS)
    for name in ("test", "train", "fold0_val", "fold1_val"):
        gt_dir = out / "score" / name / "ground-truth"
        assert sorted(p.stem for p in gt_dir.glob("*.txt")) == sorted(lists[name]), name
    ids = lists["test"]
    perfect = {i: {"boxes": voc[i][:, :4], "scores": np.ones(len(voc[i])),
                   "labels": voc[i][:, 4].astype(int)} for i in ids}
    det_eval.write_detections_json(tmp_path / "port.json", perfect, LABELS)
    res = det_eval.main(det_eval.parse_args(["--gt", str(out / "score" / "test" / "ground-truth"),
                                             "--dr", str(tmp_path / "port.json"),
                                             "--offset", "0"]))
    assert res["map_voc12"] == pytest.approx(1.0)


def test_coco_json_loads_in_pycocotools_with_our_boxes(data, tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco")
    out = tmp_path / "coco"
    run(data, out, "coco", "--difficult", "crowd")
    voc = gluoncv_voc(data, LABELS)
    image_id = {}
    worst = 0.0
    for name, ids in split_lists(data).items():
        coco = coco_api.COCO(str(out / f"{name}.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == LABELS
        imgs = coco.loadImgs(coco.getImgIds())
        assert sorted(im["sample_id"] for im in imgs) == sorted(ids), name
        for im in imgs:
            sid = im["sample_id"]
            assert image_id.setdefault(sid, im["id"]) == im["id"]    # one id per image
            assert (out / "images" / im["file_name"]).is_file()
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[im["id"]]))
            ref = voc[sid]
            assert len(anns) == len(ref)
            for a, r in zip(anns, ref):
                x, y, w, h = a["bbox"]
                worst = max(worst, float(np.abs(np.array([x, y, x + w, y + h]) - r[:4]).max()))
                assert LABELS[a["category_id"] - 1] == LABELS[int(r[4])]
                assert a["iscrowd"] == int(r[5]) and a["area"] == pytest.approx(w * h)
    assert worst <= 1.0
    print(f"COCO round trip: max error {worst:.4f} px")


def test_out_folder_policy_and_cli(data, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("x")
    with pytest.raises(ValueError, match="not an earlier export"):
        run(data, foreign, "yolo")
    out = tmp_path / "again"
    run(data, out, "coco")
    run(data, out, "yolo")                    # an earlier export is replaced, not mixed
    assert not (out / "train.json").exists() and (out / "train.txt").exists()
    with pytest.raises(ValueError, match="inside --data"):
        run(data, data / "export", "yolo")
    proc = subprocess.run([sys.executable, str(REPO / "export_data.py"), "--data",
                           str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--format",
                           "coco"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "export_data: error:" in proc.stderr
    assert "Traceback" not in proc.stderr
