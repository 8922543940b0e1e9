"""eval.detection against GluonCV's VOC metrics, the Cartucho/mAP algorithm and slow loops.

References: ``gluoncv.utils.metrics.voc_detection.VOCMApMetric`` / ``VOC07MApMetric`` and
``gluoncv.utils.bbox.bbox_iou``; ``bench.bench_map.cartucho_loop_map`` (the Cartucho tool's
per-detection loop, main.py's algorithm); a per-image Python matcher written here. Random
inputs (tests/detection_fixtures.py) carry difficult boxes, equal scores, empty images and,
where named, inverted detection boxes; every failure message shows the seed.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval import detection as D
from eval.detection_io import FormatError
from tests.detection_fixtures import random_set

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2, 3, 4]
CLASSES = ["a", "b", "c"]


# --------------------------------------------------------------------------- references
def gluon_map(gt, det, classes, voc07, shift=0.0):
    """VOCMApMetric / VOC07MApMetric fed one image per update; ``shift`` is subtracted from
    x2, y2 before (GluonCV always adds 1)."""
    pytest.importorskip("gluoncv")
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric, VOCMApMetric
    metric = (VOC07MApMetric if voc07 else VOCMApMetric)(iou_thresh=0.5, class_names=classes)
    for k, g in gt.items():
        d = det.get(k, {"boxes": np.zeros((0, 4)), "labels": np.zeros(0), "scores": np.zeros(0)})
        gb = np.array(g["boxes"], float).reshape(-1, 4)
        db = np.array(d["boxes"], float).reshape(-1, 4)
        gb[:, 2:] -= shift
        db[:, 2:] -= shift
        # GluonCV strips label -1 padding; pad so that empty images still go through update
        pad = lambda a, v, w: np.concatenate([a.reshape(-1, w), np.full((1, w), v)])[None]
        metric.update(pad(db, -1.0, 4), pad(np.asarray(d["labels"], float), -1, 1)[..., 0],
                      pad(np.asarray(d["scores"], float), -1, 1)[..., 0],
                      pad(gb, -1.0, 4), pad(np.asarray(g["labels"], float), -1, 1)[..., 0],
                      pad(np.asarray(g["difficult"], float), 0, 1)[..., 0])
    names, values = metric.get()
    return dict(zip(names, values))


def iou_py(a, b, offset):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + offset
    ih = min(a[3], b[3]) - max(a[1], b[1]) + offset
    if iw <= 0 or ih <= 0:
        return 0.0
    ua = (a[2] - a[0] + offset) * (a[3] - a[1] + offset) + \
        (b[2] - b[0] + offset) * (b[3] - b[1] + offset) - iw * ih
    return iw * ih / ua


def slow_match(gt, det, iou, offset):
    """The obvious per-image, per-detection greedy matcher (stable order of equal scores)."""
    out = {}
    for k, d in det.items():
        g = gt[k]
        flags = np.zeros(len(d["scores"]), int)
        used = set()
        for j in sorted(range(len(flags)), key=lambda j: -d["scores"][j]):
            best, bi = -1.0, -1
            for t in range(len(g["labels"])):
                if g["labels"][t] == d["labels"][j]:
                    o = iou_py(d["boxes"][j], g["boxes"][t], offset)
                    if o > best:
                        best, bi = o, t
            if bi >= 0 and best >= iou:
                if g["difficult"][bi]:
                    flags[j] = -1
                elif bi not in used:
                    flags[j] = 1
                    used.add(bi)
        out[k] = flags
    return out


# --------------------------------------------------------------------------- IoU
@pytest.mark.parametrize("offset", [0, 1])
def test_box_iou_matches_gluoncv_bbox_iou(offset):
    pytest.importorskip("gluoncv")
    from gluoncv.utils.bbox import bbox_iou
    rng = np.random.RandomState(offset)
    a = np.round(rng.uniform(0, 50, (30, 4)))
    b = np.round(rng.uniform(0, 50, (20, 4)))
    a = np.c_[np.minimum(a[:, :2], a[:, 2:]), np.maximum(a[:, :2], a[:, 2:]) + 1]
    b = np.c_[np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:]) + 1]
    # VOCMApMetric's way: add the offset to x2, y2, then bbox_iou with offset 0
    sa, sb = a.copy(), b.copy()
    sa[:, 2:] += offset
    sb[:, 2:] += offset
    np.testing.assert_array_equal(D.box_iou(a, b, offset=offset), bbox_iou(sa, sb))
    slow = np.array([[iou_py(x, y, offset) for y in b] for x in a])
    np.testing.assert_allclose(D.box_iou(a, b, offset=offset), slow, rtol=0, atol=1e-12)


def test_box_iou_edge_cases():
    # touching boxes overlap by one pixel column under the VOC convention only
    a, b = [[0, 0, 9, 9]], [[9, 0, 18, 9]]
    assert D.box_iou(a, b, offset=0)[0, 0] == 0
    assert D.box_iou(a, b, offset=1)[0, 0] == pytest.approx(10 / 190)
    assert D.box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]], offset=0)[0, 0] == 0  # empty union, not nan
    assert D.box_iou(np.zeros((0, 4)), a, offset=1).shape == (0, 1)


# --------------------------------------------------------------------------- GluonCV agreement
@pytest.mark.parametrize("inverted", [0.0, 0.15])
@pytest.mark.parametrize("seed", SEEDS)
def test_map_equals_gluoncv_voc_metrics(seed, inverted):
    # inverted: a share of detection boxes with x2 < x1 and/or y2 < y1, scored as GluonCV does
    gt, det = random_set(seed, inverted=inverted)
    n_inv = sum(int(D.inverted_boxes(d["boxes"]).sum()) for d in det.values())
    assert (n_inv > 10) == (inverted > 0), f"seed={seed}: {n_inv} inverted boxes"
    r = D.evaluate(gt, det, CLASSES, iou=0.5, offset=1, ties="gluoncv")
    assert r["inverted"]["n"] == n_inv and r["inverted"]["tp"] == 0
    for voc07, key in ((False, "voc12"), (True, "voc07")):
        ref = gluon_map(gt, det, CLASSES, voc07)
        for c in CLASSES:
            assert r["per_class"][c][f"ap_{key}"] == pytest.approx(ref[c], abs=1e-12), \
                f"seed={seed} {key} class {c}"
        assert r[f"map_{key}"] == pytest.approx(ref["mAP"], abs=1e-12), f"seed={seed} {key}"
    assert 0.05 < r["map_voc12"] < 0.95, f"seed={seed}: degenerate test data"


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_offset0_equals_gluoncv_on_boxes_shrunk_by_one(seed):
    # Integer boxes: gluon adds 1 to (x2 - 1), exactly the unshifted box, i.e. offset 0.
    gt, det = random_set(seed, integer=True)
    r = D.evaluate(gt, det, CLASSES, offset=0, ties="gluoncv")
    for voc07, key in ((False, "voc12"), (True, "voc07")):
        ref = gluon_map(gt, det, CLASSES, voc07, shift=1.0)
        assert r[f"map_{key}"] == pytest.approx(ref["mAP"], abs=1e-12), f"seed={seed} {key}"
    r1 = D.evaluate(gt, det, CLASSES, offset=1, ties="gluoncv")
    assert r1["map_voc12"] != r["map_voc12"], f"seed={seed}: offset had no effect"


def test_ties_matter_and_stable_equals_gluoncv_without_ties():
    gt, det = random_set(7, score_decimals=1)
    a = D.evaluate(gt, det, CLASSES, offset=1, ties="stable")["map_voc12"]
    b = D.evaluate(gt, det, CLASSES, offset=1, ties="gluoncv")["map_voc12"]
    assert a != b  # coarse scores: the order of equal scores changes the curve
    gt, det = random_set(7, score_decimals=12)
    a = D.evaluate(gt, det, CLASSES, offset=1, ties="stable")
    b = D.evaluate(gt, det, CLASSES, offset=1, ties="gluoncv")
    assert a["map_voc12"] == b["map_voc12"] and a["map_voc07"] == b["map_voc07"]


# --------------------------------------------------------------------------- Cartucho agreement
@pytest.mark.parametrize("seed,offset", [(0, 1), (1, 1), (2, 0)])
def test_cli_equals_cartucho_loop(tmp_path, seed, offset):
    from bench.bench_map import cartucho_loop_map
    gt, det = random_set(seed, n_img=25, score_decimals=2)
    D.write_cartucho(tmp_path, CLASSES, gt=gt, det=det)
    ref_map, ref_aps = cartucho_loop_map(tmp_path / "ground-truth",
                                         tmp_path / "detection-results", offset=offset)
    out = D.main(D.parse_args(["--gt", str(tmp_path / "ground-truth"), "--dr",
                               str(tmp_path / "detection-results"), "--offset", str(offset)]))
    assert out["map_voc12"] == pytest.approx(ref_map, abs=1e-12), f"seed={seed}"
    for c, ap in ref_aps.items():
        assert out["per_class"][c]["ap_voc12"] == pytest.approx(ap, abs=1e-12), f"seed={seed}"


# --------------------------------------------------------------------------- matching
@pytest.mark.parametrize("seed", SEEDS)
def test_match_detections_equals_slow_loop(seed):
    gt, det = random_set(seed, score_decimals=2)
    for offset in (0, 1):
        fast = D.match_detections(gt, det, iou=0.5, offset=offset)
        slow = slow_match(gt, det, 0.5, offset)
        assert fast.keys() == det.keys()
        for k in det:
            np.testing.assert_array_equal(fast[k], slow[k], err_msg=f"seed={seed} image {k}")
    # counts in evaluate() are those of the flags
    r = D.evaluate(gt, det, CLASSES, offset=1)
    flags = np.concatenate(list(D.match_detections(gt, det, offset=1).values()))
    assert sum(v["tp"] for v in r["per_class"].values()) == np.sum(flags == 1)
    assert sum(v["fp"] for v in r["per_class"].values()) == np.sum(flags == 0)
    n_pos = sum(int(np.sum(~g["difficult"])) for g in gt.values())
    assert sum(v["fn"] + v["tp"] for v in r["per_class"].values()) == n_pos


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_operating_point_and_best_f1_equal_brute_force(seed):
    gt, det = random_set(seed, score_decimals=2)
    flags = slow_match(gt, det, 0.5, 1)
    scores = np.concatenate([det[k]["scores"] for k in det])
    f = np.concatenate([flags[k] for k in det])
    n_pos = sum(int(np.sum(~g["difficult"])) for g in gt.values())
    best = None
    for t in np.unique(scores)[::-1]:
        tp = int(np.sum((f == 1) & (scores >= t)))
        fp = int(np.sum((f == 0) & (scores >= t)))
        op = D.operating_point(gt, det, t, offset=1)
        assert (op["tp"], op["fp"], op["fn"]) == (tp, fp, n_pos - tp), f"seed={seed} t={t}"
        assert op["fp_per_image"] == fp / len(gt)
        assert op["f1"] == pytest.approx(2 * tp / (2 * tp + fp + n_pos - tp)), f"seed={seed}"
        if best is None or op["f1"] > best["f1"]:
            best = op
    got = D.best_f1_threshold(gt, det, offset=1)
    assert got["score_threshold"] == best["score_threshold"], f"seed={seed}"
    assert got["f1"] == best["f1"]
    none = D.operating_point(gt, det, 2.0, offset=1)
    assert none["tp"] == none["fp"] == 0 and none["precision"] == 0.0 and none["recall"] == 0.0


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_best_fbeta_threshold_equals_sklearn_brute_force(seed):
    """Every threshold scored by scikit-learn's fbeta_score on detection-level labels: a
    detection is a positive when greedy matching makes it a TP, and every lesion no detection
    matches is a positive predicted negative, so FN = n_pos - TP at any threshold."""
    from sklearn.metrics import fbeta_score
    gt, det = random_set(seed, score_decimals=2)
    flags = slow_match(gt, det, 0.5, 1)
    scores = np.concatenate([det[k]["scores"] for k in det])
    f = np.concatenate([flags[k] for k in det])
    n_pos = sum(int(np.sum(~g["difficult"])) for g in gt.values())
    counted = f >= 0  # -1: matched a difficult box, ignored
    y_true = np.r_[f[counted] == 1, np.ones(n_pos - int(np.sum(f == 1)), bool)]
    for beta in (0.5, 1.0, 2.0, 3.0):
        best = None
        for t in np.unique(scores)[::-1]:
            y_pred = np.r_[scores[counted] >= t, np.zeros(len(y_true) - counted.sum(), bool)]
            fb = fbeta_score(y_true, y_pred, beta=beta)
            if best is None or fb > best[1] + 1e-12:
                best = (t, fb)
        got = D.best_fbeta_threshold(gt, det, beta, offset=1)
        assert got["score_threshold"] == best[0], f"seed={seed} beta={beta}"
        assert got["fbeta"] == pytest.approx(best[1], abs=1e-12)
        assert got["beta"] == beta
    assert D.best_f1_threshold(gt, det, offset=1)["score_threshold"] == \
        D.best_fbeta_threshold(gt, det, 1.0, offset=1)["score_threshold"]
    with pytest.raises(ValueError, match="beta must be positive"):
        D.best_fbeta_threshold(gt, det, 0.0, offset=1)


def test_best_f1_threshold_refuses_no_positives():
    gt = {"x": {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}}
    det = {"x": {"boxes": [[0, 0, 5, 5]], "scores": [0.5], "labels": [0]}}
    with pytest.raises(ValueError, match="0 positive"):
        D.best_f1_threshold(gt, det, offset=1)


def test_evaluate_class_without_ground_truth_is_left_out():
    gt = {"x": {"boxes": [[0, 0, 10, 10]], "labels": [0], "difficult": [False]}}
    det = {"x": {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "scores": [0.9, 0.8],
                 "labels": [0, 1]}}
    r = D.evaluate(gt, det, ["a", "b"], offset=1)
    assert r["per_class"]["a"]["ap_voc12"] == 1.0
    assert np.isnan(r["per_class"]["b"]["ap_voc12"])
    assert r["map_voc12"] == 1.0 and r["map_voc07"] == pytest.approx(1.0)  # 11 x (1/11)
    with pytest.raises(ValueError, match="without ground truth"):
        D.evaluate(gt, {"y": det["x"]}, offset=1)


# --------------------------------------------------------------------------- hand-written CLI case
GT_FILES = {
    # cat: TP at 0.9, a duplicate (FP) at 0.8; dog is difficult, its detection is ignored
    "a": "cat 10 10 50 50\ndog 60 60 100 100 difficult\n",
    # dog found; a cat detection far from the cat box (FP), and the cat is missed (FN)
    "b": "cat 0 0 20 20\ndog 30 30 70 70\n",
    # no detection file at all: its cat is a false negative
    "c": "cat 5 5 25 25\n",
}
DR_FILES = {
    "a": "cat 0.9 12 12 50 50\ncat 0.8 10 10 48 52\ndog 0.7 60 60 100 100\n",
    "b": "dog 0.6 30 30 70 70\n\ncat 0.5 100 100 120 120\n",
}


def write_folder(root, files):
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / f"{name}.txt").write_text(text)
    return root


@pytest.fixture
def cartucho3(tmp_path):
    return (write_folder(tmp_path / "ground-truth", GT_FILES),
            write_folder(tmp_path / "detection-results", DR_FILES))


def test_cli_on_three_image_folder(cartucho3, tmp_path):
    gt_dir, dr_dir = cartucho3
    # cat: 3 positives, ranked TP, FP, FP -> recall 1/3 at precision 1.
    # voc12 area = 1/3; voc07 = 4 of 11 points (t = 0, .1, .2, .3 <= 1/3) at precision 1.
    # dog: the difficult box's detection is ignored; one positive, found -> AP 1.
    out = subprocess.run([sys.executable, "-m", "eval.detection", "--gt", str(gt_dir),
                          "--dr", str(dr_dir), "--json", str(tmp_path / "r.json"),
                          "--plots", str(tmp_path / "plots")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["cat: 33.33%", "dog: 100.00%", "mAP = 66.67%"]
    summary = json.loads((tmp_path / "r.json").read_text())
    cat = summary["per_class"]["cat"]
    assert (cat["tp"], cat["fp"], cat["fn"], cat["n_pos"]) == (1, 2, 2, 3)
    assert summary["per_class"]["dog"]["n_ignored"] == 1
    assert_png(tmp_path / "plots" / "pr_voc12.png")
    s = D.main(D.parse_args(["--gt", str(gt_dir), "--dr", str(dr_dir), "--metric", "voc07"]))
    assert s["per_class"]["cat"]["ap_voc07"] == pytest.approx(4 / 11)
    assert s["map_voc07"] == pytest.approx((4 / 11 + 1) / 2)


def assert_png(path):
    import matplotlib.image as mpimg
    img = mpimg.imread(str(path))
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert img[..., :3].std() > 0.01, f"{path} is blank"


@pytest.mark.parametrize("files,where,message", [
    ({"b": "dog 0.6 30 30 70\n"}, "b.txt:1", "want 'class score x1 y1 x2 y2'"),
    ({"b": "dog 0.6 30 30 70 70\ncat 0.5 1 2 x 4\n"}, "b.txt:2", "numbers"),
    ({"b": "dog nan 30 30 40 70\n"}, "b.txt:1", "finite"),
    ({"b": "dog 0.5 30 inf 40 70\n"}, "b.txt:1", "finite"),
    # a non-finite number is an error even on a line of a class that is then ignored
    ({"b": "dog 0.5 1 2 3 4\nbird 0.6 30 30 nan 70\n"}, "b.txt:2", "finite"),
    ({"zz": "dog 0.6 30 30 40 70\n"}, "zz.txt", "without ground truth"),
])
def test_cli_errors_name_file_and_line(tmp_path, files, where, message):
    gt_dir = write_folder(tmp_path / "gt", GT_FILES)
    dr_dir = write_folder(tmp_path / "dr", files)
    with pytest.raises(FormatError) as e:
        D.main(D.parse_args(["--gt", str(gt_dir), "--dr", str(dr_dir)]))
    assert where in str(e.value) and message in str(e.value)


@pytest.mark.parametrize("files,classes,where,message", [
    ({"a": "cat 10 10 50 50\ncat 50 10 10 50\n"}, None, "a.txt:2", "x1 <= x2"),
    ({"a": "cat 10 10 50 5 difficult\n"}, None, "a.txt:1", "y1 <= y2"),
    ({"a": "\nbird 1 2 3 4\n"}, "cat,dog", "a.txt:2", "unknown class 'bird'"),
])
def test_ground_truth_stays_strict(tmp_path, files, classes, where, message):
    gt_dir = write_folder(tmp_path / "gt", files)
    dr_dir = write_folder(tmp_path / "dr", {})
    with pytest.raises(FormatError) as e:
        D.main(D.parse_args(["--gt", str(gt_dir), "--dr", str(dr_dir)]
                            + (["--classes", classes] if classes else [])))
    assert where in str(e.value) and message.replace("y1 <= y2", "x1 <= x2") in str(e.value)
    with pytest.raises(ValueError, match="ground truth 'x' box 0.*x1 <= x2"):
        D.evaluate({"x": {"boxes": [[5, 0, 1, 4]], "labels": [0]}}, {}, ["a"], offset=1)


def test_numeric_difficult_flag_is_refused(tmp_path):
    gt_dir = write_folder(tmp_path / "gt", {"a": "cat 1 2 30 40\ncat 1 2 30 40 1\n"})
    with pytest.raises(FormatError, match="a.txt:2: 6 fields ending in '1'.*'difficult'"):
        D.read_cartucho(gt_dir)


def test_files_larger_than_one_read(tmp_path):
    lines = [f"cat {i} {i} {i + 10.5} {i + 20.25}\n" for i in range(5000)]  # > 64 KiB
    gt_dir = write_folder(tmp_path / "gt", {"a": "".join(lines)})
    gt, _, _ = D.read_cartucho(gt_dir)
    assert len(gt["a"]["boxes"]) == 5000 and gt["a"]["boxes"][-1].tolist() == [
        4999, 4999, 5009.5, 5019.25]


def test_cli_error_exit_code(tmp_path):
    gt_dir = write_folder(tmp_path / "gt", {"a": "cat 1 2 3\n"})
    out = subprocess.run([sys.executable, "-m", "eval.detection", "--gt", str(gt_dir),
                          "--dr", str(gt_dir)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "a.txt:1" in out.stderr and "class x1 y1 x2 y2" in out.stderr


# --------------------------------------------------------------------------- readers/writers
def test_cartucho_round_trip_with_spaces_and_difficult(tmp_path):
    gt, det = random_set(3, n_img=12, score_decimals=9)
    classes = ["small lesion", "b", "c"]
    D.write_cartucho(tmp_path, classes, gt=gt, det=det)
    gt2, det2, classes2 = D.read_cartucho(tmp_path / "ground-truth",
                                          tmp_path / "detection-results", classes)
    assert classes2 == classes and list(gt2) == sorted(gt)
    for k in gt:
        for key in ("boxes", "labels", "difficult"):
            np.testing.assert_array_equal(gt2[k][key], gt[k][key], err_msg=f"{k} {key}")
        d = det.get(k, {"boxes": np.zeros((0, 4)), "scores": [], "labels": []})
        for key in ("boxes", "scores", "labels"):
            np.testing.assert_array_equal(det2[k][key], np.asarray(d[key]).reshape(
                det2[k][key].shape), err_msg=f"{k} {key}")
    with pytest.raises(FileExistsError):
        D.write_cartucho(tmp_path, classes, gt=gt)  # never mixes with old files


def test_json_round_trip_and_cli_with_json_and_voc(tmp_path, cartucho3):
    gt_dir, dr_dir = cartucho3
    gt, det, classes = D.read_cartucho(gt_dir, dr_dir)
    D.write_detections_json(tmp_path / "det.json", det, classes)
    doc = json.loads((tmp_path / "det.json").read_text())
    assert doc["coords"] == "half" and doc["classes"] == classes
    det2, classes2 = D.read_detections_json(tmp_path / "det.json")
    assert classes2 == classes
    for k in det:
        for key in ("boxes", "scores", "labels"):
            np.testing.assert_array_equal(det2[k][key], det[k][key])
    # VOC XML ground truth (1-based on disk) for the same images
    ann = tmp_path / "Annotations"
    ann.mkdir()
    for k, g in gt.items():
        objs = "".join(
            f"<object><name>{classes[c]}</name><difficult>{int(d)}</difficult><bndbox>"
            f"<xmin>{b[0] + 1:g}</xmin><ymin>{b[1] + 1:g}</ymin><xmax>{b[2] + 1:g}</xmax>"
            f"<ymax>{b[3] + 1:g}</ymax></bndbox></object>"
            for c, b, d in zip(g["labels"], g["boxes"], g["difficult"]))
        (ann / f"{k}.xml").write_text(f"<annotation><filename>{k}.jpg</filename>{objs}"
                                      f"</annotation>")
    gt3, classes3 = D.read_voc_dir(ann)
    assert classes3 == classes
    for k in gt:
        np.testing.assert_array_equal(gt3[k]["boxes"], gt[k]["boxes"])
        np.testing.assert_array_equal(gt3[k]["difficult"], gt[k]["difficult"])
    ref = D.main(D.parse_args(["--gt", str(gt_dir), "--dr", str(dr_dir)]))
    for gt_arg, dr_arg in ((ann, tmp_path / "det.json"), (ann, dr_dir), (gt_dir, tmp_path / "det.json")):
        got = D.main(D.parse_args(["--gt", str(gt_arg), "--dr", str(dr_arg)]))
        assert got["map_voc12"] == ref["map_voc12"] and got["per_class"] == ref["per_class"]


def test_detections_json_errors(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps({"classes": ["a"], "images": {"x": {"boxes": [[0, 0, 1, 1]],
                                                               "scores": [0.5],
                                                               "labels": [3]}}}))
    with pytest.raises(FormatError, match="'x'.*labels must index"):
        D.read_detections_json(p)
    p.write_text("{")
    with pytest.raises(FormatError, match="not JSON"):
        D.read_detections_json(p)


# --------------------------------------------------------------------------- what the peers accept
EXTRA_DR = {  # classes absent from GT_FILES, interleaved with the real detections
    "a": "refrigerator 0.95 12 12 50 50\ncat 0.9 12 12 50 50\ncat 0.8 10 10 48 52\n"
         "dog 0.7 60 60 100 100\nsofa 0.65 1 1 9 9\n",
    "b": "dog 0.6 30 30 70 70\nrefrigerator 0.55 0 0 20 20\n\ncat 0.5 100 100 120 120\n",
}


def test_detections_of_classes_without_ground_truth_are_ignored_and_counted(tmp_path, cartucho3):
    from bench.bench_map import cartucho_loop_map
    gt_dir, dr_dir = cartucho3
    extra = write_folder(tmp_path / "extra", EXTRA_DR)

    def cli(dr, *more):
        out = subprocess.run([sys.executable, "-m", "eval.detection", "--gt", str(gt_dir),
                              "--dr", str(dr), "--metric", "voc12", "--offset", "1", *more],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out
    plain, got = cli(dr_dir), cli(extra)
    assert got.stdout == plain.stdout and plain.stderr == ""
    assert got.stderr.splitlines() == [
        "warning: ignored 3 detections of 2 class(es) without ground truth: refrigerator, sofa"]
    ref_map, _ = cartucho_loop_map(gt_dir, extra, offset=1)
    assert got.stdout.splitlines()[-1] == f"mAP = {100 * ref_map:.2f}%"
    # the same through a detections JSON whose class list has the extra names
    gt, det, classes = D.read_cartucho(gt_dir, extra, ["cat", "dog", "refrigerator", "sofa"])
    D.write_detections_json(tmp_path / "det.json", det, ["cat", "dog", "refrigerator", "sofa"])
    via_json = cli(tmp_path / "det.json")
    assert via_json.stdout == plain.stdout and via_json.stderr == got.stderr
    # --classes narrower than the detections: the others are ignored the same way
    narrow = cli(extra, "--classes", "cat,dog")
    assert narrow.stdout == plain.stdout and narrow.stderr == got.stderr


def test_public_readers_log_ignored_classes(tmp_path, cartucho3, caplog):
    gt_dir, _ = cartucho3
    extra = write_folder(tmp_path / "extra", EXTRA_DR)
    with caplog.at_level("WARNING", logger="eval.detection_io"):
        gt, det, classes = D.read_cartucho(gt_dir, extra)
    assert classes == ["cat", "dog"] and sum(len(d["labels"]) for d in det.values()) == 5
    assert "ignored 3 detections of 2 class(es) without ground truth: refrigerator, sofa" \
        in caplog.text


@pytest.mark.parametrize("seed,offset", [(0, 1), (1, 0), (2, 1), (3, 0)])
def test_inverted_boxes_and_extra_class_equal_cartucho_loop(tmp_path, seed, offset):
    from bench.bench_map import cartucho_loop_map
    gt, det = random_set(seed, n_img=25, score_decimals=2, inverted=0.15)
    rng = np.random.RandomState(seed)
    for d in det.values():  # some detections of a class the ground truth never has
        d["labels"] = np.where(rng.rand(len(d["labels"])) < 0.1, 3, d["labels"])
    D.write_cartucho(tmp_path, CLASSES + ["refrigerator"], gt=gt, det=det)
    ref_map, ref_aps = cartucho_loop_map(tmp_path / "ground-truth",
                                         tmp_path / "detection-results", offset=offset)
    out = D.main(D.parse_args(["--gt", str(tmp_path / "ground-truth"), "--dr",
                               str(tmp_path / "detection-results"), "--offset", str(offset)]))
    n_extra = sum(int(np.sum(d["labels"] == 3)) for d in det.values())
    assert out["ignored"] == {"refrigerator": n_extra} and n_extra > 0, f"seed={seed}"
    assert out["inverted"]["n"] > 10, f"seed={seed}"
    assert out["map_voc12"] == pytest.approx(ref_map, abs=1e-12), f"seed={seed}"
    for c, ap in ref_aps.items():
        assert out["per_class"][c]["ap_voc12"] == pytest.approx(ap, abs=1e-12), f"seed={seed}"


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # GluonCV's 0/0
def test_inverted_box_edge_cases_follow_cartucho(tmp_path):
    from bench.bench_map import cartucho_loop_map
    one = {"x": {"boxes": [[0, 0, 0, 0]], "labels": [0], "difficult": [False]}}
    # Inverted by less than a pixel: the peers' +1 arithmetic makes it a valid box 0.9 wide,
    # which overlaps a one-pixel ground-truth box (IoU 0.81): all three call it a match.
    sub = {"x": {"boxes": [[0.1, 0.1, 0.0, 0.0]], "scores": [0.9], "labels": [0]}}
    assert D.match_detections(one, sub, offset=1)["x"].tolist() == [1]
    assert D.match_detections(one, sub, offset=0)["x"].tolist() == [0]
    assert gluon_map(one, sub, ["a"], voc07=False)["a"] == 1.0
    D.write_cartucho(tmp_path / "sub", ["a"], gt=one, det=sub)
    assert cartucho_loop_map(tmp_path / "sub/ground-truth", tmp_path / "sub/detection-results",
                             offset=1)[0] == 1.0
    # Where we differ from GluonCV: its bbox_iou divides 0 by 0 when an inverted box's
    # negative area cancels a ground-truth box's area, and VOCMApMetric takes the NaN for a
    # match. Cartucho (iw <= 0: no overlap) and we call it a false positive.
    gt = {"x": {"boxes": [[20, 20, 23, 24]], "labels": [0], "difficult": [False]}}
    det = {"x": {"boxes": [[10, 0, 4, 3]], "scores": [0.9], "labels": [0]}}  # (-5) x 4 = -20
    assert D.evaluate(gt, det, ["a"], offset=1)["map_voc12"] == 0.0
    assert gluon_map(gt, det, ["a"], voc07=False)["a"] == 1.0
    D.write_cartucho(tmp_path / "nan", ["a"], gt=gt, det=det)
    assert cartucho_loop_map(tmp_path / "nan/ground-truth", tmp_path / "nan/detection-results",
                             offset=1)[0] == 0.0


def test_iou_exactly_at_the_threshold_is_a_match(tmp_path):
    # Cartucho (ovmax >= min_overlap), the VOC devkit and GluonCV (not < iou_thresh) all use >=
    from bench.bench_map import cartucho_loop_map
    gt = {"x": {"boxes": [[0, 0, 9, 9]], "labels": [0], "difficult": [False]}}
    det = {"x": {"boxes": [[0, 0, 9, 4]], "scores": [0.9], "labels": [0]}}  # 50 / 100 pixels
    assert D.box_iou(det["x"]["boxes"], gt["x"]["boxes"], offset=1)[0, 0] == 0.5
    assert D.match_detections(gt, det, offset=1)["x"].tolist() == [1]
    assert gluon_map(gt, det, ["a"], voc07=False)["a"] == 1.0
    D.write_cartucho(tmp_path, ["a"], gt=gt, det=det)
    assert cartucho_loop_map(tmp_path / "ground-truth", tmp_path / "detection-results",
                             offset=1)[0] == 1.0


def test_offset_is_required_in_every_entry_point():
    from eval import two_stage
    gt = {"x": {"boxes": [[0, 0, 9, 9]], "labels": [0], "difficult": [False]}}
    det = {"x": {"boxes": [[0, 0, 9, 4]], "scores": [0.9], "labels": [0]}}
    calls = [(D.evaluate, (gt, det)), (D.match_detections, (gt, det)),
             (D.operating_point, (gt, det, 0.5)), (D.best_f1_threshold, (gt, det)),
             (D.best_fbeta_threshold, (gt, det, 2.0)),
             (D.box_iou, (det["x"]["boxes"], gt["x"]["boxes"])),
             (two_stage.compare, (gt, det, {"x": np.zeros(1)}, 0.0, 0.5, ["a"]))]
    for f, args in calls:
        with pytest.raises(TypeError, match="offset"):
            f(*args)


def test_cli_offset_default_is_one_and_documented(cartucho3):
    gt_dir, dr_dir = cartucho3
    out = subprocess.run([sys.executable, "-m", "eval.detection", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    help_text = " ".join(out.stdout.split())
    assert "--offset {0,1}" in help_text and "(default: 1;" in help_text
    assert D.main(D.parse_args(["--gt", str(gt_dir), "--dr", str(dr_dir)]))["offset"] == 1
