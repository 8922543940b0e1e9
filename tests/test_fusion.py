"""Weighted box fusion against ZFTurbo's ensemble_boxes (the reference implementation)."""
import numpy as np
import pytest

from eval import fusion

ensemble_boxes = pytest.importorskip("ensemble_boxes")


def _model_boxes(rng, truth, n_bg):
    """One model's boxes: jittered copies of most true boxes, a duplicate, background."""
    keep = rng.random_sample(len(truth)) < 0.8
    b = truth[keep] + rng.normal(0, 0.02, (keep.sum(), 4))
    dup = b[:1] + rng.normal(0, 0.01, (min(1, len(b)), 4))
    xy = rng.uniform(0, 0.8, (n_bg, 2))
    bg = np.c_[xy, xy + rng.uniform(0.02, 0.2, (n_bg, 2))]
    boxes = np.clip(np.r_[b, dup, bg], 0, 1)
    boxes = np.c_[np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])]
    scores = np.round(rng.uniform(0.01, 1, len(boxes)), 3)  # rounded: equal scores occur
    labels = rng.randint(0, 2, len(boxes))
    return boxes, scores, labels


@pytest.mark.parametrize("seed", range(20))
def test_equals_ensemble_boxes(seed):
    rng = np.random.RandomState(seed)
    xy = rng.uniform(0, 0.7, (rng.randint(0, 6), 2))
    truth = np.c_[xy, xy + rng.uniform(0.05, 0.3, (len(xy), 2))]
    models = [_model_boxes(rng, truth, rng.randint(0, 8)) for _ in range(rng.randint(1, 6))]
    thr = float(rng.choice([0.3, 0.55, 0.7]))
    want = ensemble_boxes.weighted_boxes_fusion([m[0].tolist() for m in models],
                                                [m[1].tolist() for m in models],
                                                [m[2].tolist() for m in models],
                                                iou_thr=thr, skip_box_thr=0.05)
    got = fusion.weighted_boxes_fusion([m[0] for m in models], [m[1] for m in models],
                                       [m[2] for m in models], iou_thr=thr, skip_box_thr=0.05)
    assert len(got[0]) == len(want[0]), f"seed {seed}"
    # ensemble_boxes keeps fused boxes in float32; compare as sets ordered by score, box
    key_w = np.lexsort((want[0][:, 0], -want[1]))
    key_g = np.lexsort((got[0][:, 0], -got[1]))
    np.testing.assert_allclose(got[1][key_g], want[1][key_w], rtol=1e-5, err_msg=f"seed {seed}")
    np.testing.assert_allclose(got[0][key_g], want[0][key_w], atol=1e-5, err_msg=f"seed {seed}")
    np.testing.assert_array_equal(got[2][key_g], want[2][key_w].astype(int))


def test_one_model_keeps_its_boxes_and_scores():
    b = np.array([[10, 10, 50, 60], [100, 100, 140, 150.]])
    s = np.array([0.9, 0.4])
    got = fusion.weighted_boxes_fusion([b], [s], [np.zeros(2)], iou_thr=0.55)
    np.testing.assert_allclose(got[0], b)
    np.testing.assert_allclose(got[1], s)


def test_box_of_one_model_in_k_drops_to_a_kth_of_its_score():
    b = np.array([[10, 10, 50, 60.]])
    none = np.zeros((0, 4))
    got = fusion.weighted_boxes_fusion([b, none, none, none], [np.array([0.8])] + [np.zeros(0)] * 3,
                                       [np.zeros(1)] + [np.zeros(0)] * 3)
    np.testing.assert_allclose(got[1], [0.2])


def test_fuse_detections_covers_every_image():
    d1 = {"a": {"boxes": np.array([[0, 0, 10, 10.]]), "scores": np.array([0.5]),
                "labels": np.array([0])}}
    d2 = {"b": {"boxes": np.array([[0, 0, 10, 10.]]), "scores": np.array([0.5]),
                "labels": np.array([0])}}
    out = fusion.fuse_detections([d1, d2])
    assert set(out) == {"a", "b"}
    np.testing.assert_allclose(out["a"]["scores"], [0.25])
