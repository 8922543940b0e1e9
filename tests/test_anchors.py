"""models/anchors.py: k-means with the 1 - IoU distance, against a per-box loop; set on a net."""
import numpy as np
import pytest

from models import anchors


def _loop_kmeans(wh, centres, iters):
    """The obvious version: each box to the centre of highest IoU, centres = member medians."""
    centres = [list(c) for c in centres]
    assign = None
    for _ in range(iters):
        new = []
        for w, h in wh:
            ious = []
            for cw, ch in centres:
                inter = min(w, cw) * min(h, ch)
                ious.append(inter / (w * h + cw * ch - inter))
            new.append(int(np.argmax(ious)))
        if new == assign:
            break
        assign = new
        for k in range(len(centres)):
            members = [wh[i] for i in range(len(wh)) if assign[i] == k]
            if members:
                centres[k] = list(np.median(np.array(members), axis=0))
    return np.array(centres)


@pytest.mark.parametrize("seed", range(5))
def test_fit_equals_the_loop_from_the_same_start(seed):
    rng = np.random.RandomState(seed)
    wh = np.exp(rng.normal(3, 0.6, (150, 2)))
    got = anchors.fit_anchors(wh, 9, seed=seed, n_init=1)
    # the same k-means++ start, drawn by hand
    rng2 = np.random.RandomState(seed)
    centres = [wh[rng2.randint(len(wh))]]
    for _ in range(8):
        d = 1.0 - anchors.wh_iou(wh, np.array(centres)).max(axis=1)
        p = d ** 2
        centres.append(wh[rng2.choice(len(wh), p=p / p.sum())])
    want = _loop_kmeans(wh, centres, 300)
    want = want[np.argsort(want.prod(axis=1), kind="stable")]
    np.testing.assert_allclose(got, want, err_msg=f"seed {seed}")


def test_more_starts_never_fit_worse():
    rng = np.random.RandomState(7)
    wh = np.exp(rng.normal(3, 0.7, (200, 2)))
    one = anchors.anchor_fitness(wh, anchors.fit_anchors(wh, seed=7, n_init=1))
    many = anchors.anchor_fitness(wh, anchors.fit_anchors(wh, seed=7, n_init=8))
    assert many["mean_best_iou"] >= one["mean_best_iou"]


def test_planted_clusters_are_found():
    rng = np.random.RandomState(0)
    planted = np.array([[6, 8], [12, 10], [10, 20], [24, 18], [20, 40], [40, 30],
                        [50, 70], [80, 60], [110, 120.]])
    wh = np.concatenate([c * np.exp(rng.normal(0, 0.05, (40, 2))) for c in planted])
    got = anchors.fit_anchors(wh, 9, seed=1)
    best = anchors.wh_iou(planted, got).max(axis=1)
    assert best.min() > 0.85, best


def test_fitted_anchors_cover_small_boxes_better_than_coco():
    rng = np.random.RandomState(3)
    wh = np.exp(rng.normal(np.log(14), 0.5, (300, 2)))  # lesions at a 128 px input
    fitted = anchors.anchor_fitness(wh, anchors.fit_anchors(wh))
    coco = anchors.anchor_fitness(wh, anchors.COCO_ANCHORS)
    assert fitted["mean_best_iou"] > coco["mean_best_iou"] + 0.05, (fitted, coco)


def test_boxes_at_input_scales_each_axis():
    wh = anchors.boxes_at_input([np.array([[0, 0, 50, 20.]])], [(200, 100)], 128)
    np.testing.assert_allclose(wh, [[32, 25.6]])


def test_too_few_boxes_is_an_error():
    with pytest.raises(ValueError, match="cannot make 9 anchors"):
        anchors.fit_anchors(np.ones((5, 2)))


def test_set_anchors_reaches_forward_and_params_file(tmp_path):
    import mxnet as mx
    from mxnet import autograd
    from models import yolo
    fitted = np.arange(1, 19, dtype=float).reshape(9, 2) * 3
    net = yolo.build("yolo3_mobilenet0.25_custom", ["lesion"], anchors=fitted)
    np.testing.assert_allclose(yolo.get_anchors(net), fitted)
    with autograd.train_mode():
        out = net(mx.nd.zeros((1, 3, 64, 64)))
    # output layers run large to small (stride 32 first)
    np.testing.assert_allclose(np.concatenate([a.asnumpy().reshape(-1, 2) for a in out[1]]),
                               np.concatenate([fitted[6:], fitted[3:6], fitted[:3]]))
    net.save_parameters(str(tmp_path / "m.params"))
    again = yolo.build("yolo3_mobilenet0.25_custom", ["lesion"],
                       init_params=tmp_path / "m.params")
    np.testing.assert_allclose(yolo.get_anchors(again), fitted)


def test_check_anchors_keeps_covering_defaults_and_refits_otherwise():
    rng = np.random.RandomState(0)
    lesions = np.exp(rng.normal(np.log([13, 8]), 0.4, (400, 2)))  # 128 px inputs
    fitted, fit = anchors.check_anchors(lesions)
    assert fitted is None and fit["best_possible_recall"] >= 0.98
    specks = np.exp(rng.normal(np.log([2.0, 1.5]), 0.2, (400, 2)))  # far below 10x13 / 4
    fitted, fit = anchors.check_anchors(specks)
    assert fitted is not None and fit["best_possible_recall"] >= 0.98
    assert anchors.anchor_fitness(specks, anchors.COCO_ANCHORS)["best_possible_recall"] < 0.98


def test_ratio_recall_equals_the_loop():
    rng = np.random.RandomState(4)
    wh = np.exp(rng.normal(3, 1.2, (200, 2)))
    want = np.mean([any(max(w / aw, aw / w, h / ah, ah / h) < 4.0
                        for aw, ah in anchors.COCO_ANCHORS) for w, h in wh])
    assert anchors.anchor_fitness(wh, anchors.COCO_ANCHORS)["best_possible_recall"] == want
