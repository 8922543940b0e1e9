"""datasets/detector/data.py: fold subsets, ground truth, samplers, worker seeding, box
consistency through the augmentations, and prediction boxes mapped back to half pixels."""
import os

import numpy as np
import mxnet as mx
import pytest
from mxnet import gluon

from datasets.detector import data as dd
from eval.detection import box_iou
from tests.yolo_fixtures import make_detection_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root, _ = make_detection_data(tmp_path_factory.mktemp("dd"), n=12, n_test=4, k=2, seed=3)
    return dd.DetectionData(root, ["lesion"], None)


def test_ground_truth_from_headers_equals_the_decoded_gluoncv_labels(data):
    gt, sizes = data.ground_truth(data.ids, with_sizes=True)
    assert list(gt) == data.ids
    for i, sid in enumerate(data.ids):
        img, label = data.records[i]  # GluonCV decodes and scales by the image's own size
        np.testing.assert_allclose(gt[sid]["boxes"], label[:, :4], rtol=1e-5, atol=1e-3)
        assert gt[sid]["labels"].tolist() == label[:, 4].astype(int).tolist()
        assert sizes[sid] == (img.shape[1], img.shape[0])


def test_subset_follows_the_requested_ids(data):
    want = data.splits["folds"][1]["val"]
    sub = data.subset(want)
    assert len(sub) == len(want)
    for k, sid in enumerate(want):
        np.testing.assert_array_equal(sub[k][1], data.records[data.ids.index(sid)][1])
    with pytest.raises(KeyError, match="not in the record file"):
        data.subset(["nope"])


def test_split_sampler_gives_equal_disjoint_parts_per_epoch():
    parts = [dd.SplitSampler(11, 3, r, seed=5) for r in range(3)]
    for epoch in range(3):
        for p in parts:
            p.set_epoch(epoch)
        got = [list(p) for p in parts]
        assert all(len(g) == 11 // 3 for g in got)
        assert all(e == epoch for g in got for _, e in g)  # keys carry their epoch
        flat = [i for g in got for i, _ in g]
        assert len(set(flat)) == len(flat) and set(flat) <= set(range(11))
    a, b = dd.SplitSampler(11, seed=5), dd.SplitSampler(11, seed=5)
    assert list(a) == list(b)                # same seed, same order
    assert [i for i, _ in a] != [i for i, _ in dd.SplitSampler(11, seed=5)]  # next epoch
    a.set_epoch(0)
    assert list(a) == list(dd.SplitSampler(11, seed=5))  # set_epoch replays


class _Draws(gluon.data.Dataset):
    """What the transform after RecordSubset.__getitem__ sees: the process and its next draws
    from the two generators GluonCV's transforms use."""

    def __init__(self, sub):
        self._sub = sub

    def __len__(self):
        return len(self._sub)

    def __getitem__(self, key):
        import random
        self._sub[key]
        return np.array([os.getpid(), np.random.randint(2 ** 30), random.randrange(2 ** 30)],
                        dtype=np.int64)


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_augmentation_draws_depend_on_seed_epoch_and_item_only(data, workers):
    """MXNET_TRAPS 13: forked workers inherit one random state, and the pool decides which
    worker gets which batch. Keyed seeding gives every item the same draws with any number
    of workers, a new draw every epoch, and another with another seed."""
    def draws(seed, workers, epoch=0):
        sub = data.subset(data.ids, seed=seed)
        sampler = dd.SplitSampler(len(sub), seed=1)
        sampler.set_epoch(epoch)
        keys = list(sampler)
        loader = gluon.data.DataLoader(_Draws(sub), batch_size=2, num_workers=workers,
                                       sampler=_Keys(keys))
        rows = np.concatenate([b.asnumpy() for b in loader])
        dd.close_loader(loader)
        return keys, rows

    keys, rows = draws(7, 0)
    keys_w, rows_w = draws(7, workers)
    assert keys == keys_w
    np.testing.assert_array_equal(rows[:, 1:], rows_w[:, 1:])
    if workers:
        assert os.getpid() not in set(rows_w[:, 0].tolist())
    assert not np.array_equal(draws(7, 0, epoch=1)[1][:, 1:], rows[:, 1:])
    assert not np.array_equal(draws(8, 0)[1][:, 1:], rows[:, 1:])
    # An int key (validation) leaves the caller's random state alone.
    np.random.seed(1)
    assert int(_Draws(data.subset(data.ids, seed=7))[0][1]) == \
        np.random.RandomState(1).randint(2 ** 30)


@pytest.mark.parametrize("numpy_transform, extra", [(True, False), (True, True),
                                                     (False, False)])
def test_train_batches_are_the_same_with_0_and_1_workers(data, numpy_transform, extra):
    """The real loader (cached images, YOLO transform, ExtraAugment, batchify): the same
    batches in the training process, in its loader thread and in a forked worker (keyed
    seeding, the numpy path's numpy images and shared-memory batches)."""
    from datasets.detector.augment import ExtraAugment
    from models import yolo
    net = yolo.transform_net("yolo3_mobilenet0.25_custom", ["lesion"])
    sub = data.subset(data.ids, seed=5, max_side=96, cache=True)
    transforms = dd.train_transforms(net, [64], ExtraAugment() if extra else None,
                                     max_expand=4.0, numpy_transform=numpy_transform)

    def batches(workers, thread=False, burst=1):
        loader = dd.train_loader(sub, transforms, 4, workers,
                                 sampler=dd.SplitSampler(len(sub), seed=3), thread=thread,
                                 burst=burst)
        try:  # two epochs: the second's augmentation is keyed by its own epoch
            return [[x.asnumpy() for x in b] for _ in range(2) for b in loader]
        finally:
            dd.close_loader(loader)

    here, threaded, forked = batches(0), batches(0, thread=True), batches(1)
    bursts = [batches(0, burst=b) for b in (2, 5)]  # 3 batches an epoch: 2 + 1, then 3
    assert len(here) == len(threaded) == len(forked) == 2 * (len(sub) // 4)
    for a, *others in zip(here, threaded, forked, *bursts):
        for b in others:
            assert [x.shape for x in a] == [x.shape for x in b]
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)
    assert not np.array_equal(here[0][0], here[len(here) // 2][0])  # epochs differ


def test_burst_loader_reads_ahead_within_an_epoch_only():
    """BurstLoader pulls ``burst`` batches before yielding the first of them, never across
    the end of an epoch (the next epoch's iterator starts afresh)."""
    pulled = []

    class Epoch:
        def __len__(self):
            return 5

        def __iter__(self):
            for k in range(5):
                pulled.append(k)
                yield k

    seen = []
    loader = dd.BurstLoader(Epoch(), 2)
    assert len(loader) == 5
    for k in loader:
        seen.append((k, len(pulled)))
    assert seen == [(0, 2), (1, 2), (2, 4), (3, 4), (4, 5)]
    with pytest.raises(ValueError, match="at least 1 batch"):
        dd.BurstLoader(Epoch(), 0)


def test_burst_loading_takes_no_thread_or_processes(data):
    from models import yolo
    net = yolo.transform_net("yolo3_mobilenet0.25_custom", ["lesion"])
    sub = data.subset(data.ids, seed=5, max_side=96, cache=True)
    for workers, thread in ((1, False), (0, True)):
        with pytest.raises(ValueError, match="burst loading"):
            dd.train_loader(sub, dd.train_transforms(net, [64]), 4, workers, thread=thread,
                            burst=2)


def test_loader_thread_takes_no_loader_processes(data):
    from models import yolo
    net = yolo.transform_net("yolo3_mobilenet0.25_custom", ["lesion"])
    sub = data.subset(data.ids, seed=5, max_side=96, cache=True)
    with pytest.raises(ValueError, match="takes 0 loader processes"):
        dd.train_loader(sub, dd.train_transforms(net, [64]), 4, 1, thread=True)


class _Keys(gluon.data.sampler.Sampler):
    def __init__(self, keys):
        self._keys = keys

    def __iter__(self):
        return iter(self._keys)

    def __len__(self):
        return len(self._keys)


@pytest.mark.parametrize("numpy_transform", [False, True])
def test_boxes_follow_the_pixels_through_extra_augment_and_the_yolo_transform(
        numpy_transform):
    """A white rectangle off-centre on black, its box as label: after ExtraAugment's
    rotation and GluonCV's colour jitter, expand, crop, resize and flip (GluonCV's or the
    numpy transform's), the returned box must match the bounding box of the white pixels.
    A box that missed one geometric step (e.g. the rotation about the image centre) lands
    elsewhere."""
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
    from datasets.detector.augment import ExtraAugment
    from datasets.detector.numpy_transform import NumpyYOLO3TrainTransform
    yolo_t = YOLO3DefaultTrainTransform(96, 96, net=None)
    if numpy_transform:
        yolo_t = NumpyYOLO3TrainTransform(yolo_t)
    t = dd.TrainTransform(yolo_t, ExtraAugment(rotate_deg=30, p=1.0, noise_std=0,
                                               speckle_std=0, brightness=0, contrast=0,
                                               sharpness=0))
    np.random.seed(11)
    mean = np.array(dd.IMAGE_MEAN)[:, None, None]
    std = np.array(dd.IMAGE_STD)[:, None, None]
    ious = []
    for k in range(12):
        img = np.zeros((90, 120, 3), np.uint8)
        x1, y1 = 8 + 3 * k, 6 + 2 * k
        img[y1:y1 + 24, x1:x1 + 30] = 255
        label = np.array([[x1, y1, x1 + 30, y1 + 24, 0, 0]], np.float32)
        x, boxes = t(img if numpy_transform else mx.nd.array(img, dtype=np.uint8), label)
        x = x if numpy_transform else x.asnumpy()
        grey = (x * std + mean).mean(axis=0) * 255
        ys, xs = np.nonzero(grey > 0.8 * grey.max())  # colour jitter dims the white
        white = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        ious.append(box_iou([white], boxes[:1, :4], offset=0)[0, 0])
    assert np.median(ious) > 0.8 and min(ious) > 0.6, np.round(ious, 2)


class _FixedBoxNet:
    """Stands in for YOLOV3 at inference: the same boxes for every image of a batch."""

    def __init__(self, ids, scores, boxes):
        self._out = (np.array(ids, np.float32)[:, None], np.array(scores, np.float32)[:, None],
                     np.array(boxes, np.float32))

    def set_nms(self, **kwargs):
        self.nms = kwargs

    def hybridize(self, active=True, **kwargs):  # HybridBlock's signature
        self.hybridized = dict(kwargs, active=active)

    def __call__(self, x):
        n = x.shape[0]
        return tuple(mx.nd.array(np.repeat(a[None], n, axis=0)) for a in self._out)


def test_predict_maps_boxes_back_to_each_images_own_pixels(data):
    from models.yolo_train import predict
    net = _FixedBoxNet(ids=[0, 0, -1, 0], scores=[0.9, 0.005, 0.8, 0.3],
                       boxes=[[16, 8, 32, 48], [0, 0, 64, 64], [1, 1, 2, 2], [-8, 40, 20, 70]])
    sub = data.subset(data.ids[:5])
    preds = predict(net, dd.val_loader(sub, 64, 2), [mx.cpu()], score_thresh=0.01, top_k=7)
    assert net.nms["post_nms"] == 7
    assert net.hybridized == dict(active=True, static_alloc=False, static_shape=False)
    assert len(preds) == 5
    _, sizes = data.ground_truth(data.ids[:5], with_sizes=True)
    for sid, p in zip(data.ids[:5], preds):
        w, h = sizes[sid]
        sx, sy = w / 64, h / 64
        np.testing.assert_allclose(p["scores"], [0.9, 0.3], rtol=1e-6)  # -1 id and 0.005 gone
        np.testing.assert_allclose(p["boxes"], [[16 * sx, 8 * sy, 32 * sx, 48 * sy],
                                                [0, 40 * sy, 20 * sx, h]], rtol=1e-5)
        assert p["labels"].tolist() == [0, 0]


def test_random_shapes():
    assert dd.random_shapes(416) == list(range(320, 609, 32))  # GluonCV's 320..608
    assert dd.random_shapes(64) == [64, 96]
    assert dd.random_shapes(256, random_shape=False) == [256]
    with pytest.raises(ValueError, match="multiple of 32"):
        dd.random_shapes(100)


def test_train_loader_refuses_a_batch_larger_than_the_data(data):
    with pytest.raises(ValueError, match="exceeds"):
        dd.train_loader(data.subset(data.ids[:3]), [None], 4)


def test_max_side_shrinks_image_and_boxes_alike(data):
    full = data.subset(data.ids[:3])
    small = data.subset(data.ids[:3], max_side=48)
    for k in range(3):
        (img, label), (simg, slabel) = full[k], small[k]
        h, w = img.shape[:2]
        sh, sw = simg.shape[:2]
        assert max(sh, sw) == 48
        np.testing.assert_allclose(slabel[:, (0, 2)], label[:, (0, 2)] * sw / w, rtol=1e-5)
        np.testing.assert_allclose(slabel[:, (1, 3)], label[:, (1, 3)] * sh / h, rtol=1e-5)
        np.testing.assert_array_equal(slabel[:, 4:], label[:, 4:])
    big = data.subset(data.ids[:1], max_side=10000)[0]
    assert big[0].shape == full[0][0].shape  # never enlarged
