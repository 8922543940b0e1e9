"""Multi-class data end to end: phantom --label-by-kind -> prepare_data -> tiny train_yolo3.

The reference is the phantom's truth.json: its classes (the lesion kinds) must be the
prepared folder's classes.txt, every class id in the records must name the truth label of
that box, and the detector run must report an AP per class (summary and detections JSON).
"""
import json

import numpy as np
import pytest

import prepare_data
import train_yolo3
from datasets.phantom import generator as phantom
from datasets.prepared.classes import read_classes
from datasets.prepared.folder import read_manifest
from eval import detection as det_eval
from eval.detection import box_iou
from im2rec_tools.records import load_detection_records

pytestmark = pytest.mark.slow
SEED = 5


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiclass")
    phantom.generate(root / "raw", 10, seed=SEED, labelme_frac=1.0, label_by_kind=True,
                     sizes=[(960, 640)], progress=False)
    prep = prepare_data.main(prepare_data.parse_args(
        ["--raw", str(root / "raw"), "--out", str(root / "data"), "--folds", "2",
         "--test-frac", "0.3", "--seed", str(SEED), "--no-progress"]))
    return root, prep


def test_prepared_classes_and_record_ids_follow_the_truth(multiclass):
    root, prep = multiclass
    truth = json.loads((root / "raw" / "truth.json").read_text())
    assert truth["classes"] == ["hetero", "hypo"]
    assert read_classes(root / "data") == prep["classes"] == truth["classes"]
    by_src = {im["labelme"]: im for im in truth["images"]}
    rows = {r["id"]: r for r in read_manifest(root / "data")}
    ds, ids = load_detection_records(root / "data")
    n = 0
    for i in range(len(ds)):
        _, label = ds[i]
        row = rows[ids[i]]
        ox, oy = float(row["x_offset"]), float(row["y_offset"])
        for obj in label:
            src_box = [obj[0] + ox, obj[1] + oy, obj[2] + ox, obj[3] + oy]
            truth_boxes = by_src[row["source"]]["boxes"]
            iou = box_iou([b["box"] for b in truth_boxes], [src_box], offset=0)[:, 0]
            best = truth_boxes[int(np.argmax(iou))]
            assert iou.max() > 0.9
            assert truth["classes"][int(obj[4])] == best["class"], (ids[i], obj)
            n += 1
    assert n == prep["boxes"] and all(v > 0 for v in prep["boxes_per_class"].values())


def test_tiny_detector_reports_an_ap_per_class(multiclass):
    root, _ = multiclass
    summary = train_yolo3.main(train_yolo3.parse_args(
        ["--data", str(root / "data"), "--epochs", "1", "--network", "yolo3_mobilenet0.25_custom",
         "--data-shape", "64", "--batch-size", "2", "--num-workers", "0", "--progress", "off",
         "--gpus", "", "--out", str(root / "runs"), "--name", "mc", "--max-expand", "1"]))
    classes = ["hetero", "hypo"]
    assert summary["classes"] == classes
    for key in ("test_ap_voc12", "oof_ap_voc12"):
        assert list(summary[key]) == classes, key
    run = root / "runs" / "mc"
    assert json.loads((run / "model.json").read_text())["classes"] == classes
    for name in ("oof", "test"):
        det, det_classes = det_eval.read_detections_json(run / f"{name}_detections.json")
        assert det_classes == classes
        labels = np.concatenate([d["labels"] for d in det.values()])
        assert labels.size and set(labels.tolist()) <= {0, 1}
    # the per-class APs are what eval.detection gives on the same files
    splits = json.loads((root / "data" / "splits.json").read_text())
    gt, gt_classes = det_eval.read_voc_dir(root / "data" / "Annotations", classes,
                                           ids=splits["test"])
    det, _ = det_eval.read_detections_json(run / "test_detections.json")
    res = det_eval.evaluate(gt, det, classes, iou=0.5, offset=0)
    for c in classes:
        want, got = res["per_class"][c]["ap_voc12"], summary["test_ap_voc12"][c]
        assert (np.isnan(want) and np.isnan(got)) or want == pytest.approx(got), c
