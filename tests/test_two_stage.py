"""Detector alone vs detector + filter (eval/two_stage.py)."""
import numpy as np
import pytest

from eval import detection, two_stage


def _case(seed=0, n_img=12):
    rng = np.random.default_rng(seed)
    gt, det = {}, {}
    for i in range(n_img):
        n = int(rng.integers(1, 4))
        xy = rng.uniform(0, 200, (n, 2))
        boxes = np.hstack([xy, xy + rng.uniform(20, 40, (n, 2))])
        gt[f"im{i}"] = {"boxes": boxes, "labels": np.zeros(n, int), "difficult": np.zeros(n, bool)}
        fp_xy = rng.uniform(300, 400, (2, 2))
        fps = np.hstack([fp_xy, fp_xy + 25])
        det_boxes = np.vstack([boxes + rng.normal(0, 1, boxes.shape), fps])
        det[f"im{i}"] = {"boxes": det_boxes, "scores": rng.uniform(0.05, 1, len(det_boxes)),
                         "labels": np.zeros(len(det_boxes), int)}
    return gt, det


def _rows(det, fn):
    rows = []
    for i, d in det.items():
        for k, b in enumerate(d["boxes"]):
            rows.append({"image_id": i, "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3],
                         "filter_score": fn(i, k, d)})
    return rows


def test_open_gate_equals_detector_alone():
    gt, det = _case()
    fs = two_stage.attach_filter_scores(det, _rows(det, lambda i, k, d: 0.0))
    out = two_stage.compare(gt, det, fs, filter_threshold=-1.0, det_threshold=0.3,
                            classes=["lesion"], offset=1)
    for key in ("test_map_voc12", "test_map_voc07", "precision", "recall", "fp_per_image"):
        assert out["two_stage"][key] == pytest.approx(out["detector"][key])


def test_filter_rejecting_false_positives_raises_precision_keeps_recall():
    gt, det = _case(1)
    flags = detection.match_detections(gt, det, iou=0.5, offset=1)
    fs = two_stage.attach_filter_scores(
        det, _rows(det, lambda i, k, d: 1.0 if flags[i][k] == 1 else -1.0))
    out = two_stage.compare(gt, det, fs, 0.0, det_threshold=0.0, classes=["lesion"], offset=1)
    assert out["two_stage"]["precision"] == pytest.approx(1.0)
    assert out["two_stage"]["recall"] == pytest.approx(out["detector"]["recall"])
    assert out["detector"]["precision"] < 1.0
    assert out["two_stage"]["fp_per_image"] == 0.0
    assert out["two_stage"]["test_map_voc12"] >= out["detector"]["test_map_voc12"]


def test_unscored_detections_are_dropped_and_mismatch_is_an_error():
    gt, det = _case(2)
    rows = _rows(det, lambda i, k, d: 1.0)[:3]  # only three detections were scored
    fs = two_stage.attach_filter_scores(det, rows)
    kept = two_stage.gate(det, fs, 0.0)
    assert sum(len(d["scores"]) for d in kept.values()) == 3
    bad = [dict(rows[0], x1=rows[0]["x1"] + 50)]
    with pytest.raises(ValueError, match="matches none"):
        two_stage.attach_filter_scores(det, bad)


def test_operating_sweep_rows_equal_compare_and_counting():
    gt, det = _case(3, n_img=30)
    flags = detection.match_detections(gt, det, iou=0.5, offset=1)
    # a noisy filter: true positives score higher on average, some overlap
    rng = np.random.default_rng(7)
    fs = two_stage.attach_filter_scores(det, _rows(
        det, lambda i, k, d: float(np.tanh((1.0 if flags[i][k] == 1 else -1.0)
                                           + rng.normal(0, 0.8)))))
    pairs = [(0.05, -0.2), (0.3, 0.0), (0.6, 0.1), (0.8, 0.2)]
    rows = two_stage.operating_sweep(gt, det, fs, pairs, offset=1)
    n_pos = sum(len(g["boxes"]) for g in gt.values())
    for (t1, t2), row in zip(pairs, rows):
        ref = two_stage.compare(gt, det, fs, t2, t1, classes=["lesion"], offset=1)
        for stage in ("detector", "two_stage"):
            for k in two_stage.SWEEP_KEYS:
                assert row[f"{stage}_{k}"] == pytest.approx(ref[stage][k]), (t1, stage, k)
        # counted by hand: greedy VOC matching in score order gives the thresholded subset
        # the same true positives as the whole list
        tp = fp = tp2 = fp2 = 0
        for i, d in det.items():
            for k, s in enumerate(d["scores"]):
                if s < t1:
                    continue
                hit = flags[i][k] == 1
                tp, fp = tp + hit, fp + (not hit)
                if fs[i][k] >= t2:
                    tp2, fp2 = tp2 + hit, fp2 + (not hit)
        assert tp2 + fp2 > 0 and tp > 0, "each pair must keep detections to test anything"
        assert row["detector_precision"] == pytest.approx(tp / (tp + fp))
        assert row["two_stage_precision"] == pytest.approx(tp2 / (tp2 + fp2))
        assert row["detector_recall"] == pytest.approx(tp / n_pos)
        assert row["precision_gain"] == pytest.approx(tp2 / (tp2 + fp2) - tp / (tp + fp))
        assert row["recall_ratio"] == pytest.approx(tp2 / tp)
    # the noisy filter removes false positives at every detector threshold
    assert all(r["precision_gain"] > 0 for r in rows)
