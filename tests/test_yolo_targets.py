"""models/yolo_targets.py equals GluonCV's YOLOV3PrefetchTargetGenerator."""
import numpy as np
import mxnet as mx
import pytest
from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
from gluoncv.model_zoo.yolo.yolo_target import YOLOV3PrefetchTargetGenerator

from models import yolo, yolo_train
from models.yolo_targets import NumpyYOLOV3TargetGenerator, fast_targets


@pytest.fixture(scope="module")
def nets():
    return {c: yolo.transform_net("yolo3_mobilenet0.25_custom", [f"c{i}" for i in range(c)])
            for c in (1, 3)}


def _np(x):
    return x.asnumpy() if isinstance(x, mx.nd.NDArray) else np.asarray(x)


def _boxes(rng, n, width, height):
    x1 = rng.uniform(0, width - 2, n)
    y1 = rng.uniform(0, height - 2, n)
    # sizes from sub-pixel (max(w, 1) branch) to the whole image, all anchor layers
    w = np.minimum(rng.choice([0.5, 4, 20, 60, 200], n) * rng.uniform(0.5, 1.5, n), width - x1)
    h = np.minimum(rng.choice([0.5, 4, 20, 60, 200], n) * rng.uniform(0.5, 1.5, n), height - y1)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)


@pytest.mark.parametrize("classes, width, height, n_boxes, seed", [
    (1, 128, 96, 1, 0), (1, 96, 96, 7, 1), (3, 160, 128, 12, 2), (1, 64, 64, 30, 3),
    (3, 320, 256, 5, 4)])
def test_targets_equal_gluoncv(nets, classes, width, height, n_boxes, seed):
    t = YOLO3DefaultTrainTransform(width, height, nets[classes])
    rng = np.random.RandomState(seed)
    boxes = _boxes(rng, n_boxes, width, height)
    ids = rng.randint(classes, size=(n_boxes, 1)).astype(np.float32)
    mix = rng.uniform(0.2, 1, size=(n_boxes, 1)).astype(np.float32)
    for mixratio in (None, mx.nd.array(mix[None])):
        args = (t._fake_x, t._feat_maps, t._anchors, t._offsets, mx.nd.array(boxes[None]),
                mx.nd.array(ids[None]), mixratio)
        want = YOLOV3PrefetchTargetGenerator(num_class=classes)(*args)
        got = NumpyYOLOV3TargetGenerator(classes)(*args)
        raw = NumpyYOLOV3TargetGenerator(classes, ndarray=False)(*args)
        names = ("objectness", "center", "scale", "weights", "class")
        for name, w, g, r in zip(names, want, got, raw):
            assert g.shape == w.shape, name
            np.testing.assert_allclose(g.asnumpy(), w.asnumpy(), rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name} (seed {seed})")
            assert isinstance(r, np.ndarray) and r.dtype == np.float32, name
            np.testing.assert_array_equal(r, g.asnumpy(), err_msg=name)


def test_padding_rows_end_the_box_list(nets):
    t = YOLO3DefaultTrainTransform(96, 96, nets[1])
    boxes = np.array([[[10, 10, 40, 50], [-1, -1, -1, -1], [50, 50, 90, 90]]], np.float32)
    args = (t._fake_x, t._feat_maps, t._anchors, t._offsets, mx.nd.array(boxes),
            mx.nd.zeros((1, 3, 1)))
    got = NumpyYOLOV3TargetGenerator(1)(*args)
    want = YOLOV3PrefetchTargetGenerator(num_class=1)(*args)
    assert got[0].asnumpy().sum() == want[0].asnumpy().sum() == 1
    np.testing.assert_allclose(got[1].asnumpy(), want[1].asnumpy(), atol=1e-6)


def test_fast_transform_gives_gluoncv_samples(nets):
    """Same random stream, same image and targets through the whole train transform."""
    slow = YOLO3DefaultTrainTransform(96, 96, nets[1])
    fast = fast_targets(YOLO3DefaultTrainTransform(96, 96, nets[1]))
    rng = np.random.RandomState(5)
    img = mx.nd.array(rng.randint(0, 255, (120, 100, 3)), dtype=np.uint8)
    label = np.concatenate([_boxes(rng, 4, 100, 120) + [0, 0, 3, 3], np.zeros((4, 1))],
                           axis=1).astype(np.float32)
    label[:, 2] = np.minimum(label[:, 2], 100)
    label[:, 3] = np.minimum(label[:, 3], 120)
    for s in range(4):
        yolo_train.seed_all(s)  # GluonCV's crop draws from `random`, the rest from numpy
        a = slow(img, label)
        yolo_train.seed_all(s)
        b = fast(img, label)
        for x, y in zip(a, b):
            np.testing.assert_allclose(_np(x), _np(y), rtol=1e-5, atol=1e-5)


def _batch(rng, width, height, classes, duplicates):
    """(B, M, 4) boxes of 0-M boxes per image, padded with -1 rows (one in mid-list too),
    sub-pixel sizes (``max(w, 1)``) and, with ``duplicates``, a box given twice with another
    class where there are several (two boxes on one anchor)."""
    batch, m = rng.randint(1, 9), rng.randint(1, 12)
    boxes = np.stack([_boxes(rng, m, width, height) for _ in range(batch)])
    ids = rng.randint(classes, size=(batch, m, 1)).astype(np.float32)
    if duplicates and m > 1:
        boxes[:, 1] = boxes[:, 0]
        ids[:, 1] = (ids[:, 0] + 1) % classes
    for row, n in zip(boxes, rng.randint(0, m + 1, batch)):
        row[n:] = -1
    if m > 3:
        boxes[0, 2] = -1
    return boxes, ids


@pytest.mark.parametrize("seed", range(12))
def test_array_fill_equals_the_box_loop_bit_for_bit(nets, seed, monkeypatch):
    """The batch path (all boxes in array operations) writes the loop's bits: float32 and
    float64 steps as numpy computes them on float32 scalars, the later of two boxes on one
    anchor, padding rows ending an image's list."""
    import models.yolo_targets as yt
    rng = np.random.RandomState(seed)
    classes = (1, 3)[seed % 2]
    width, height = ((128, 96), (96, 96), (160, 128), (64, 64))[seed % 4]
    t = YOLO3DefaultTrainTransform(width, height, nets[classes])
    boxes, ids = _batch(rng, width, height, classes, duplicates=seed % 3 == 0)
    mix = rng.uniform(0.2, 1, ids.shape).astype(np.float32) if seed % 4 == 1 else None
    args = (t._fake_x, t._feat_maps, t._anchors, None, boxes, ids, mix)
    results = []
    for limit in (10 ** 6, -1):  # all boxes by the loop, then all by arrays
        monkeypatch.setattr(yt, "LOOP_MAX_BOXES", limit)
        results.append(NumpyYOLOV3TargetGenerator(classes, ndarray=False)(*args))
    assert results[0][0].sum() > 0
    for name, a, b in zip(("objectness", "center", "scale", "weights", "class"), *results):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_batch_with_padding_equals_gluoncv(nets):
    """A loader's batch in one call (the arrays path) against GluonCV's generator."""
    rng = np.random.RandomState(7)
    t = YOLO3DefaultTrainTransform(128, 96, nets[3])
    boxes, ids = _batch(rng, 128, 96, 3, duplicates=False)
    while (boxes[..., 0] >= 0).sum() <= 3:
        boxes, ids = _batch(rng, 128, 96, 3, duplicates=False)
    args = (t._fake_x, t._feat_maps, t._anchors, t._offsets, mx.nd.array(boxes),
            mx.nd.array(ids))
    want = YOLOV3PrefetchTargetGenerator(num_class=3)(*args)
    got = NumpyYOLOV3TargetGenerator(3)(*args)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g.asnumpy(), w.asnumpy(), rtol=1e-5, atol=1e-5)
