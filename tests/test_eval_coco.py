"""eval.coco and eval.coco_io against pycocotools' COCOeval (the reference COCO scorer).

pycocotools is a test dependency (requirements-test.txt); without it these tests skip. Random
sets (tests/detection_fixtures.py) carry near-duplicates, background false positives, empty
images, three classes, crowd (difficult) boxes, equal scores, inverted boxes and images with
150 detections of one class (past COCO's 100 per image); every failure message shows the seed.
"""
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval import coco as C
from eval import coco_io
from eval import detection as D
from eval.detection_io import FormatError
from tests.detection_fixtures import random_set

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["a", "b", "c"]
SEEDS = [0, 1, 2, 3]


def coco_set(seed, int_ids=False):
    """random_set with scores that favour good boxes (so AP covers the whole recall range)."""
    gt, det = random_set(seed, n_img=45, score_decimals=2, jitter=1.5, big=150, inverted=0.04,
                         int_ids=int_ids)
    rng = np.random.RandomState(seed)
    for k, d in det.items():
        g = gt[k]
        iou = D.box_iou(d["boxes"], g["boxes"], offset=0)
        iou[d["labels"][:, None] != g["labels"][None, :]] = 0
        best = iou.max(axis=1) if iou.size else np.zeros(len(d["scores"]))
        d["scores"] = np.round(0.6 * best + 0.4 * rng.rand(len(best)), 2)
    return gt, det


def _quiet(f, *args):
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        return f(*args)


def pycoco(instances, results):
    """COCOeval(bbox) on an instances object or file and a results list or file."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    if isinstance(instances, dict):
        gt = _quiet(COCO)
        gt.dataset = instances
        _quiet(gt.createIndex)
    else:
        gt = _quiet(COCO, str(instances))
    dt = _quiet(gt.loadRes, results if isinstance(results, list) else str(results))
    E = COCOeval(gt, dt, "bbox")
    _quiet(E.evaluate)
    _quiet(E.accumulate)
    _quiet(E.summarize)
    return E


def reference(gt, det, classes=CLASSES):
    """pycocotools on our dicts, converted with the writers' own functions."""
    inst = coco_io.to_coco_instances(gt, classes)
    return pycoco(json.loads(json.dumps(inst)), coco_io.to_coco_results(det, classes))


@pytest.mark.parametrize("int_ids", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_coco_ap_equals_pycocotools(seed, int_ids):
    gt, det = coco_set(seed, int_ids)
    assert max(int(np.sum(d["labels"] == 0)) for d in det.values()) > 100, f"seed={seed}"
    E = reference(gt, det)
    r = C.evaluate(gt, det, CLASSES)
    got = [r["ap"], r["ap50"], r["ap75"], r["ar"]]
    ref = [E.stats[0], E.stats[1], E.stats[2], E.stats[8]]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9, err_msg=f"seed={seed}")
    np.testing.assert_allclose(r["precision"], E.eval["precision"][:, :, :, 0, -1], rtol=0,
                               atol=1e-9, err_msg=f"seed={seed}")
    for k, c in enumerate(CLASSES):  # per-class AP the way detectron2 reads COCOeval
        p = E.eval["precision"][:, :, k, 0, -1]
        assert r["per_class"][c]["ap"] == pytest.approx(np.mean(p[p > -1]), abs=1e-9), \
            f"seed={seed} class {c}"
    assert 0.1 < r["ap"] < 0.8 and r["ap50"] > r["ap75"], f"seed={seed}: degenerate test data"
    assert r["inverted"]["n"] > 5 and r["inverted"]["ignored"] > 0, f"seed={seed}"


def test_class_without_ground_truth_is_left_out_and_empty_results_score_zero():
    gt, det = coco_set(4)
    for e in gt.values():  # class "c" has no ground truth at all
        keep = e["labels"] != 2
        for k in ("boxes", "labels", "difficult"):
            e[k] = e[k][keep]
    E = reference(gt, det)
    r = C.evaluate(gt, det, CLASSES)
    assert np.isnan(r["per_class"]["c"]["ap"]) and r["per_class"]["c"]["n_pos"] == 0
    assert r["ap"] == pytest.approx(E.stats[0], abs=1e-9)
    empty = C.evaluate(gt, {}, CLASSES)  # pycocotools cannot load an empty list; 0 is the answer
    assert empty["ap"] == 0.0 and empty["ar"] == 0.0


def _write_native(tmp_path, gt, det, extra_results=()):
    ids = coco_io.coco_image_ids(sorted(gt))
    inst = coco_io.write_coco_instances(tmp_path / "instances.json", gt, CLASSES, image_ids=ids)
    res = coco_io.to_coco_results(det, CLASSES, image_ids=ids) + list(extra_results)
    (tmp_path / "results.json").write_text(json.dumps(res))
    return inst, tmp_path / "results.json"


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_cli_scores_native_coco_files_as_pycocotools(tmp_path, seed):
    gt, det = coco_set(seed)
    # results of a category the ground truth does not have: pycocotools drops them
    extra = [{"image_id": 1, "category_id": 99, "bbox": [1, 2, 3, 4], "score": 0.99}] * 7
    inst, res = _write_native(tmp_path, gt, det, extra)
    E = pycoco(inst, res)
    out = subprocess.run([sys.executable, "-m", "eval.detection", "--gt", str(inst),
                          "--dr", str(res), "--metric", "coco", "--json",
                          str(tmp_path / "r.json"), "--plots", str(tmp_path / "plots")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-3:] == [f"AP50: {100 * E.stats[1]:.2f}%", f"AP75: {100 * E.stats[2]:.2f}%",
                          f"mAP@[.5:.95] = {100 * E.stats[0]:.2f}%"], f"seed={seed}"
    assert [line.split(":")[0] for line in lines[:-3]] == CLASSES
    warn = out.stderr.splitlines()
    assert warn[0] == "warning: ignored 7 detections of 1 class(es) without ground truth: " \
                      "category_id 99", out.stderr
    assert warn[1].startswith("warning: ") and "inverted detection box(es)" in warn[1]
    assert "scored as pycocotools does" in warn[1] and len(warn) == 2
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary["metric"] == "coco"
    np.testing.assert_allclose([summary["ap"], summary["ap50"], summary["ap75"], summary["ar"]],
                               E.stats[[0, 1, 2, 8]], rtol=0, atol=1e-9, err_msg=f"seed={seed}")
    assert (tmp_path / "plots" / "pr_coco.png").stat().st_size > 1000


def test_coco_json_round_trip(tmp_path):
    gt, det = coco_set(5, int_ids=True)
    inst, res = _write_native(tmp_path, gt, det)
    gt2, classes, meta = coco_io.read_coco_instances(inst)
    assert classes == CLASSES and meta["category_ids"] == [1, 2, 3]
    ids = coco_io.coco_image_ids(sorted(gt))
    assert list(gt2) == [ids[k] for k in gt]  # file order = gt order
    assert meta["images"][ids[sorted(gt)[0]]]["file_name"] == f"{sorted(gt)[0]}.jpg"
    det2 = coco_io.read_coco_results(res, meta["category_ids"], list(gt2))
    for k in gt:
        a, b = gt[k], gt2[ids[k]]
        np.testing.assert_allclose(b["boxes"], a["boxes"].reshape(-1, 4), rtol=1e-12)
        np.testing.assert_array_equal(b["labels"], a["labels"])
        np.testing.assert_array_equal(b["difficult"], a["difficult"])
        if k in det and len(det[k]["scores"]):
            np.testing.assert_allclose(det2[ids[k]]["boxes"], det[k]["boxes"], rtol=1e-12)
            np.testing.assert_array_equal(det2[ids[k]]["scores"], det[k]["scores"])
            np.testing.assert_array_equal(det2[ids[k]]["labels"], det[k]["labels"])
    # custom category ids and image info pass through
    doc = coco_io.to_coco_instances(gt, CLASSES, image_info={k: {"width": 640} for k in gt},
                                    category_ids=[7, 3, 5])
    assert [c["id"] for c in doc["categories"]] == [7, 3, 5]
    assert all(img["width"] == 640 for img in doc["images"])
    gt3, classes3, meta3 = coco_io.instances_from_doc(doc)
    assert classes3 == ["b", "c", "a"] and meta3["category_ids"] == [3, 5, 7]


def test_coco_metric_on_every_input_form(tmp_path):
    """Cartucho folders, COCO instances + Cartucho detections (matched by file-name stem),
    COCO instances + detections JSON, and native COCO files give one answer."""
    gt, det = coco_set(6)
    D.write_cartucho(tmp_path / "cartucho", CLASSES, gt=gt, det=det)
    inst, res = _write_native(tmp_path, gt, det)
    D.write_detections_json(tmp_path / "det.json", det, CLASSES)
    cg, cd = tmp_path / "cartucho" / "ground-truth", tmp_path / "cartucho" / "detection-results"
    E = pycoco(inst, res)
    for metric in ("coco", "voc12"):
        runs = [D.main(D.parse_args(["--gt", str(g), "--dr", str(d), "--metric", metric]))
                for g, d in ((cg, cd), (inst, cd), (inst, tmp_path / "det.json"), (inst, res))]
        key = "ap" if metric == "coco" else "map_voc12"
        for r in runs[1:]:
            assert r[key] == pytest.approx(runs[0][key], abs=1e-9), metric
    assert runs[0]["map_voc12"] != runs[0].get("ap")
    coco_run = D.main(D.parse_args(["--gt", str(cg), "--dr", str(cd), "--metric", "coco"]))
    assert coco_run["ap"] == pytest.approx(E.stats[0], abs=1e-9)


@pytest.mark.parametrize("doc,message", [
    ({"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                               "bbox": [5, 5, -2, 3]}],
      "categories": [{"id": 1, "name": "a"}]}, "annotation #0 (id 1): want bbox"),
    ({"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 2, "category_id": 1,
                                               "bbox": [5, 5, 2, 3]}],
      "categories": [{"id": 1, "name": "a"}]}, "image_id 2 is not among the 1 images"),
    ({"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1, "category_id": 4,
                                               "bbox": [5, 5, 2, 3]}],
      "categories": [{"id": 1, "name": "a"}]}, "category_id 4 is not among the categories [1]"),
    ({"images": [{"id": 1}, {"id": 1}], "annotations": [], "categories": []},
     "image id 1 appears twice"),
    ({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"},
                                                      {"id": 2, "name": "a"}]},
     "category names must be unique"),
])
def test_instances_ground_truth_is_strict(tmp_path, doc, message):
    p = tmp_path / "inst.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(FormatError) as e:
        coco_io.read_coco_instances(p)
    assert str(p) in str(e.value) and message in str(e.value)


def test_results_errors_and_refusals(tmp_path, capsys):
    gt, det = coco_set(7)
    inst, res = _write_native(tmp_path, gt, det)
    D.write_cartucho(tmp_path / "c", CLASSES, gt=gt)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 10 ** 6, "category_id": 1, "bbox": [0, 0, 1, 1],
                                "score": 0.5}]))
    with pytest.raises(FormatError, match="result #0: image_id 1000000 has no ground truth"):
        D.main(D.parse_args(["--gt", str(inst), "--dr", str(bad)]))
    bad.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, "x", 1],
                                "score": 0.5}]))
    with pytest.raises(FormatError, match=r"result #0: want bbox \[x, y, w, h\]"):
        D.main(D.parse_args(["--gt", str(inst), "--dr", str(bad)]))
    with pytest.raises(FormatError, match="COCO results list: its category_id values need"):
        D.main(D.parse_args(["--gt", str(tmp_path / "c" / "ground-truth"), "--dr", str(res)]))
    with pytest.raises(ValueError, match="names its own categories"):
        D.main(D.parse_args(["--gt", str(inst), "--dr", str(res), "--classes", "a,b"]))
    for extra in (["--iou", "0.5"], ["--offset", "1"], ["--ties", "gluoncv"]):
        with pytest.raises(ValueError, match="--metric coco fixes"):
            D.main(D.parse_args(["--gt", str(inst), "--dr", str(res), "--metric", "coco"] + extra))
    out = D.main(D.parse_args(["--gt", str(inst), "--dr", str(res), "--metric", "coco",
                               "--offset", "0"]))
    assert out["ap"] > 0 and capsys.readouterr().out.splitlines()[-1].startswith("mAP@[.5:.95] = ")


def test_annotation_area_outside_the_range_is_ignored_as_pycocotools(tmp_path):
    # pycocotools reads an annotation's own "area" (segmentation area in real COCO) for its
    # area ranges; past 1e10 a non-crowd box is ignored yet, unlike a crowd, matched only once
    gt, det = coco_set(8)
    inst, res = _write_native(tmp_path, gt, det)
    doc = json.loads(inst.read_text())
    rng = np.random.RandomState(8)
    for ann in doc["annotations"]:
        if rng.rand() < 0.2:
            ann["area"] = 2e10
    inst.write_text(json.dumps(doc))
    E = pycoco(inst, res)
    got = D.main(D.parse_args(["--gt", str(inst), "--dr", str(res), "--metric", "coco"]))
    np.testing.assert_allclose([got["ap"], got["ap50"], got["ap75"], got["ar"]],
                               E.stats[[0, 1, 2, 8]], rtol=0, atol=1e-9)
    plain = C.evaluate(gt, det, CLASSES)  # box areas: a different answer
    assert abs(plain["ap"] - got["ap"]) > 1e-3
