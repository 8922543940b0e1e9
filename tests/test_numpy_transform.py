"""datasets/detector/numpy_transform.py against GluonCV's own YOLOv3 train transform (as
``train_transforms(..., numpy_transform=False)`` builds it): same boxes and targets, the
same image up to the resize, the random generators left in the same state; and the loader
built on it (numpy samples, the numpy batchify) against the GluonCV path."""
import pickle
import random

import cv2
import numpy as np
import mxnet as mx
import pytest

from datasets.detector import data as dd
from datasets.detector import numpy_transform as nt
from models import yolo, yolo_train

#: Image tolerance in normalised units ((x / 255 - mean) / std; one grey level is about
#: 0.017). MXNet 1.9.1 resizes with the OpenCV 3.4.2 built into libmxnet.so, the numpy
#: transform with the cv2 package (4.x): their float32 bilinear and bicubic resizes differ
#: by up to ~1.5e-4 here (0.01 grey levels; coefficient rounding), Lanczos by ~2e-6.
#: Nearest and area agree to float32 rounding, and so does everything before the resize
#: (asserted to PRE_RESIZE_ATOL below), so the tolerance only covers the two OpenCV builds.
IMAGE_ATOL = 5e-4
#: Float32 rounding, not arithmetic: bit-equal on an Intel AVX-512 CPU, up to 1.2e-6 (a few
#: ulps) on an AMD EPYC, where MXNet's kernels (hue's nd.dot among them) round differently.
#: A wrong draw or operation moves a pixel by whole grey levels (~0.017 here).
PRE_RESIZE_ATOL = 1e-5
#: The same in pixel units (0-255) for the colour steps alone: measured up to 6.1e-5 (4 ulps
#: of 200) on the AMD EPYC.
COLOUR_ATOL = 1e-3
SIZES = ((107, 128), (300, 260), (61, 77), (128, 128), (45, 250))
NAMES = ("objectness", "center", "scale", "weights", "class", "gt_boxes")


@pytest.fixture(scope="module")
def net():
    return yolo.transform_net("yolo3_mobilenet0.25_custom", ["a", "b", "c"])


@pytest.fixture(scope="module")
def pairs(net):
    """(GluonCV transform, numpy transform) per (input size, max_expand)."""
    return {(s, e): (dd._yolo_train_transform(s, net, e, numpy_transform=False),
                     dd._yolo_train_transform(s, net, e, crop="gluoncv"))
            for s in (96, 128, 160) for e in (1.0, 4.0)}


def _sample(rng):
    """Random uint8 image of an odd size and 1-6 boxes inside it, some of a pixel or two."""
    h, w = SIZES[rng.randint(len(SIZES))]
    img = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
    k = rng.randint(1, 7)
    x1, y1 = rng.uniform(0, w - 3, k), rng.uniform(0, h - 3, k)
    bw = np.minimum(rng.choice([1.2, 4, 20, 80], k) * rng.uniform(0.5, 1.5, k), w - x1)
    bh = np.minimum(rng.choice([1.2, 4, 20, 80], k) * rng.uniform(0.5, 1.5, k), h - y1)
    label = np.c_[x1, y1, x1 + bw, y1 + bh, rng.randint(0, 3, k), np.zeros(k)]
    return img, label.astype(np.float32)


def _run(transform, img, label, seed):
    yolo_train.seed_all(seed)  # GluonCV draws from both `random` and numpy
    out = transform(img, label.copy())
    return ([o.asnumpy() if isinstance(o, mx.nd.NDArray) else o for o in out],
            (random.random(), np.random.random_sample()))


@pytest.mark.parametrize("seed", range(40))
def test_same_sample_and_generator_state_as_gluoncv(pairs, seed, monkeypatch):
    rng = np.random.RandomState(100 + seed)
    size, max_expand = (96, 128, 160)[seed % 3], (1.0, 4.0)[seed // 3 % 2]
    gluon_t, numpy_t = pairs[(size, max_expand)]
    img, label = _sample(rng)
    interps = []
    resize = cv2.resize

    def spy(*args, **kwargs):
        interps.append(kwargs["interpolation"])
        return resize(*args, **kwargs)

    want, state_want = _run(gluon_t, mx.nd.array(img, dtype=np.uint8), label, seed)
    monkeypatch.setattr(cv2, "resize", spy)
    for src in (img, mx.nd.array(img, dtype=np.uint8)):  # numpy or NDArray input
        got, state_got = _run(numpy_t, src, label, seed)
        assert state_got == state_want, "generators left in another state"
        for name, w, g in zip(NAMES, want[1:], got[1:]):
            assert isinstance(g, np.ndarray) and g.dtype == np.float32, name
            assert g.shape == w.shape, name
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=name)
        x = got[0]
        assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous
        assert x.shape == want[0].shape == (3, size, size)
        if interps[-1] in (cv2.INTER_NEAREST, cv2.INTER_AREA):
            np.testing.assert_allclose(x, want[0], rtol=0, atol=PRE_RESIZE_ATOL)
        else:
            np.testing.assert_allclose(x, want[0], rtol=0, atol=IMAGE_ATOL)


def test_colour_distortion_is_mxnet_arithmetic():
    """Every colour step on its own, on a non-integer image, against GluonCV's NDArray
    code path (brightness, contrast, saturation with MXNet's Kahan sum, hue's nd.dot)."""
    from gluoncv.data.transforms.experimental.image import random_color_distort
    rng = np.random.RandomState(3)
    img = rng.uniform(-40, 300, (37, 53, 3)).astype(np.float32)
    for seed in range(30):
        np.random.seed(seed)
        random.seed(seed)
        want = random_color_distort(mx.nd.array(img)).asnumpy()
        np.random.seed(seed)
        random.seed(seed)
        ops = nt.draw_color_distort()
        got = nt.apply_color_distort(np.ascontiguousarray(img.transpose(2, 0, 1)), ops)
        np.testing.assert_allclose(got.transpose(1, 2, 0), want, rtol=0, atol=COLOUR_ATOL,
                                   err_msg=f"{ops}")


def test_transform_pickles_small_and_unchanged(pairs):
    """Loader workers unpickle the transform (with every batch under random shapes)."""
    _, t = pairs[(128, 4.0)]
    blob = pickle.dumps(dd.TrainTransform(t))
    assert len(blob) < 20000
    img, label = _sample(np.random.RandomState(0))
    a, _ = _run(pickle.loads(blob), img, label, 1)
    b, _ = _run(t, img, label, 1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_extra_augment_before_either_transform(pairs):
    """The paper recipe: ExtraAugment (numpy in, numpy out) then the numpy transform gives
    the GluonCV path's sample (ExtraAugment on an NDArray, GluonCV's transform)."""
    from datasets.detector.augment import ExtraAugment
    gluon_t, numpy_t = pairs[(160, 4.0)]
    extra = ExtraAugment(p=0.8)
    slow, fast = dd.TrainTransform(gluon_t, extra), dd.TrainTransform(numpy_t, extra)
    assert fast.numpy_input and not slow.numpy_input
    rng = np.random.RandomState(9)
    for seed in range(8):
        img, label = _sample(rng)
        want, state_want = _run(slow, mx.nd.array(img, dtype=np.uint8), label, seed)
        got, state_got = _run(fast, img, label, seed)
        assert state_got == state_want
        np.testing.assert_allclose(got[0], want[0], rtol=0, atol=IMAGE_ATOL)
        for name, w, g in zip(NAMES, want[1:], got[1:]):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=name)


def test_batchify_equals_gluoncv():
    from gluoncv.data.batchify import Pad, Stack, Tuple
    rng = np.random.RandomState(0)
    samples = [tuple(rng.rand(*s).astype(np.float32) for s in
                     ((3, 8, 8), (20, 1), (20, 2), (20, 2), (20, 2), (20, 3)))
               + (rng.rand(n, 4).astype(np.float32),) for n in (1, 5, 3, 2)]
    want = Tuple(*([Stack() for _ in range(6)] + [Pad(axis=0, pad_val=-1)]))(samples)
    got = dd.train_batchify()(samples)
    assert isinstance(got, tuple) and len(got) == len(want) == 7
    for g, w in zip(got, want):
        assert isinstance(g, mx.nd.NDArray) and g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g.asnumpy(), w.asnumpy())
    # NDArray samples (GluonCV's transform) go through GluonCV's own batchify
    nd_samples = [tuple(mx.nd.array(a) for a in s) for s in samples]
    for g, w in zip(dd.train_batchify()(nd_samples), want):
        np.testing.assert_array_equal(g.asnumpy(), w.asnumpy())


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    from tests.yolo_fixtures import make_detection_data
    root, _ = make_detection_data(tmp_path_factory.mktemp("nt"), n=10, n_test=2, k=2, seed=4)
    return dd.DetectionData(root, ["lesion"], None)


@pytest.mark.parametrize("max_expand", [1.0, 4.0])
def test_loader_batches_equal_the_gluoncv_paths(detection, max_expand):
    """``train_loader`` with the numpy transform: numpy images handed to it (cached images
    read-only), then the same batches (shapes, dtypes, values) as GluonCV's path."""
    net = yolo.transform_net("yolo3_mobilenet0.25_custom", ["lesion"])
    sub = detection.subset(detection.splits["train"], seed=2, max_side=128, cache=True)
    assert not sub._cache[0][0].flags.writeable
    fast = dd.train_transforms(net, [96], max_expand=max_expand, crop="gluoncv")
    slow = dd.train_transforms(net, [96], max_expand=max_expand, numpy_transform=False)
    assert isinstance(fast[0]._yolo, nt.NumpyYOLO3TrainTransform)
    assert isinstance(sub.transform(fast[0])._data[0][0], np.ndarray)
    assert isinstance(sub.transform(slow[0])._data[0][0], mx.nd.NDArray)
    batches = []
    for transforms in (slow, fast):
        loader = dd.train_loader(sub, transforms, 4, sampler=dd.SplitSampler(len(sub), seed=1))
        batches.append(list(loader))
    assert len(batches[0]) == len(batches[1]) == len(sub) // 4
    for want, got in zip(*batches):
        assert len(got) == len(want) == 7
        for k, (w, g) in enumerate(zip(want, got)):
            assert isinstance(g, mx.nd.NDArray) and g.dtype == w.dtype == np.float32
            assert g.shape == w.shape and g.shape[0] == 4
            atol = IMAGE_ATOL if k == 0 else 1e-5
            np.testing.assert_allclose(g.asnumpy(), w.asnumpy(), rtol=1e-5 * (k > 0),
                                       atol=atol)
    assert batches[1][0][0].shape == (4, 3, 96, 96)


def test_max_expand_below_one_is_refused(net):
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
    with pytest.raises(ValueError, match="max_expand"):
        nt.NumpyYOLO3TrainTransform(YOLO3DefaultTrainTransform(96, 96, net), 0.5)


class _PerSample:
    """A train transform without ``draw``: the loader then runs it whole per image."""

    def __init__(self, transform):
        self._t = transform
        self.numpy_input = transform.numpy_input

    def __call__(self, img, label):
        return self._t(img, label)


@pytest.mark.parametrize("size, max_expand", [(96, 4.0), (128, 1.0)])
def test_batched_loader_equals_the_per_sample_loader(detection, size, max_expand):
    """The loader's split (draw per image; flip, normalisation and targets per batch, in its
    batchify) gives, bit for bit, the batches of the whole transform run per image and
    stacked: mirrored and unmirrored images in one batch, boxes padded, targets written
    one box at a time (a single image) and in arrays (a batch)."""
    from datasets.detector.augment import ExtraAugment
    net = yolo.transform_net("yolo3_mobilenet0.25_custom", ["lesion"])
    sub = detection.subset(detection.splits["train"], seed=6, max_side=size, cache=True)
    transforms = dd.train_transforms(net, [size], ExtraAugment(p=0.5), max_expand=max_expand)
    assert transforms[0].batched
    runs = []
    for ts in (transforms, [_PerSample(t) for t in transforms]):
        loader = dd.train_loader(sub, ts, 4, sampler=dd.SplitSampler(len(sub), seed=2))
        runs.append([[a.asnumpy() for a in b] for _ in range(3) for b in loader])
    batched, per_sample = runs
    assert len(batched) == len(per_sample) == 3 * (len(sub) // 4)
    for a, b in zip(batched, per_sample):
        assert [x.shape for x in a] == [x.shape for x in b]
        assert [x.dtype for x in a] == [x.dtype for x in b]
        for name, x, y in zip(("image",) + NAMES, a, b):
            np.testing.assert_array_equal(x, y, err_msg=name)
    padded = [b[-1] for b in batched]
    assert any((p == -1).all(axis=-1).any() for p in padded), "no padded box rows"


def test_batchify_refuses_drawn_images_of_an_unknown_size(net):
    (t,) = dd.train_transforms(net, [96])
    drawn = nt.Drawn(np.zeros((3, 64, 64), np.float32), False, np.zeros((1, 6), np.float32))
    with pytest.raises(ValueError, match="no transform for drawn 64x64"):
        dd.train_batchify([t])([drawn])


def test_batchify_pickles_small(net):
    """GluonCV's loaders pickle the batchify into a worker with every batch."""
    blob = pickle.dumps(dd.train_batchify(dd.train_transforms(net, dd.random_shapes(128))))
    assert len(blob) < 20000


def test_batched_loader_under_random_shapes(detection):
    """GluonCV's random-shape loader with the drawn samples: each batch is finished by the
    transform of its input size and equals the per-sample path's batch."""
    net = yolo.transform_net("yolo3_mobilenet0.25_custom", ["lesion"])
    sub = detection.subset(detection.splits["train"], seed=6, max_side=96, cache=True)
    transforms = dd.train_transforms(net, [64, 96])
    runs = []
    for ts in (transforms, [_PerSample(t) for t in transforms]):
        yolo_train.seed_all(3)  # the loader draws each interval's input size
        loader = dd.train_loader(sub, ts, 2, sampler=dd.SplitSampler(len(sub), seed=2),
                                 interval=1)
        runs.append([[a.asnumpy() for a in b] for _ in range(2) for b in loader])
    assert {b[0].shape[-1] for b in runs[0]} == {64, 96}
    for a, b in zip(*runs):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_only_a_transform_with_targets_is_batched(net):
    """Without a net there are no targets to finish: the loader runs such a transform whole."""
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
    assert dd.train_transforms(net, [96])[0].batched
    plain = dd.TrainTransform(nt.NumpyYOLO3TrainTransform(YOLO3DefaultTrainTransform(96, 96)))
    assert not plain.batched
    assert not dd.train_transforms(net, [96], numpy_transform=False)[0].batched


# ------------------------------------------------------------------ grey images, one plane
def _grey(rng, h, w):
    return np.repeat(rng.randint(0, 256, (h, w, 1)).astype(np.uint8), 3, axis=2)


def test_grey_view_only_for_equal_channels():
    rng = np.random.RandomState(0)
    img = _grey(rng, 31, 40)
    view = nt.grey_view(img)
    assert nt.is_grey_view(view) and view.strides[2] == 0 and not view.flags.writeable
    np.testing.assert_array_equal(view, img)
    assert nt.grey_view(view) is view
    tinted = img.copy()
    tinted[30, 39, 2] += 1  # one channel of one pixel
    assert nt.grey_view(tinted) is tinted and not nt.is_grey_view(tinted)
    for other in (img[..., :1], np.dstack([img, img[..., :1]]), img[..., 0]):
        assert nt.grey_view(other) is other


@pytest.mark.parametrize("seed", range(60))
def test_colour_distortion_of_one_grey_plane_equals_three(seed):
    """Bit for bit: the colour steps on one plane (the grey image's three equal planes) give
    the three-plane result, with the hue rotation in any place of the drawn order (it makes
    three planes, on which the steps after it run)."""
    rng = np.random.RandomState(seed)
    plane = rng.uniform(-40, 300, (1, 19, 23)).astype(np.float32)
    np.random.seed(seed)
    random.seed(seed)
    ops = nt.draw_color_distort()
    three = nt.apply_color_distort(np.repeat(plane, 3, axis=0), ops)
    one = nt.apply_color_distort(plane.copy(), ops)
    assert len(one) == (3 if any(op == "hue" for op, _ in ops) else 1)
    np.testing.assert_array_equal(np.broadcast_to(one, three.shape), three, err_msg=f"{ops}")


@pytest.mark.parametrize("seed", range(48))
def test_grey_view_draws_what_the_three_plane_image_draws(pairs, seed):
    """The numpy transform on a grey image as one plane (``grey_view``) and as three:
    the same image bit for bit, the same flip, boxes and targets, the generators left in
    the same state; with and without the expand fill (a colour per plane), for both crops."""
    rng = np.random.RandomState(500 + seed)
    size, max_expand = (96, 128, 160)[seed % 3], (1.0, 4.0)[seed // 3 % 2]
    crop = ("gluoncv", "sampled")[seed // 6 % 2]
    numpy_t = pairs[(size, max_expand)][1]
    if crop != numpy_t.crop:
        numpy_t = pickle.loads(pickle.dumps(numpy_t))
        numpy_t.crop = crop
    img, label = _sample(rng)
    img = _grey(rng, *img.shape[:2])
    view = nt.grey_view(img)
    assert nt.is_grey_view(view)
    outs = [_run(numpy_t, src, label, seed) for src in (img, view)]
    (want, state_want), (got, state_got) = outs
    assert state_got == state_want, "generators left in another state"
    for name, w, g in zip(("image",) + NAMES, want, got):
        assert g.dtype == w.dtype and g.shape == w.shape, name
        np.testing.assert_array_equal(g, w, err_msg=name)


def test_cached_grey_images_load_the_uncached_batches(detection):
    """The loader over cached images (grey ones kept as one plane) gives, bit for bit, the
    batches of images decoded every time, under the CPU recipe's transform and the paper's
    (expand fill, ExtraAugment)."""
    from datasets.detector.augment import ExtraAugment
    net = yolo.transform_net("yolo3_mobilenet0.25_custom", ["lesion"])
    cached = detection.subset(detection.splits["train"], seed=4, max_side=128, cache=True)
    assert all(nt.is_grey_view(img) for img, _ in cached._cache), "fixture images are grey"
    plain = detection.subset(detection.splits["train"], seed=4, max_side=128)
    for transforms in (dd.train_transforms(net, [128], max_expand=1.0),
                       dd.train_transforms(net, [96], ExtraAugment(p=0.5), max_expand=4.0)):
        runs = []
        for sub in (cached, plain):
            loader = dd.train_loader(sub, transforms, 4, sampler=dd.SplitSampler(len(sub),
                                                                                  seed=3))
            runs.append([[a.asnumpy() for a in b] for _ in range(2) for b in loader])
        assert len(runs[0]) == len(runs[1]) > 0
        for a, b in zip(*runs):
            for name, x, y in zip(("image",) + NAMES, a, b):
                np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.mark.parametrize("low, high", [(0, 1), (-32, 32), (0.5, 1.5), (1, 4.0), (-1e-3, 2e5)])
def test_uniform_is_numpys(low, high):
    """``_uniform`` draws numpy's ``uniform`` scalar: the same numbers, bit for bit, and the
    same generator state after (100,000 draws)."""
    a, b = np.random.RandomState(7), np.random.RandomState(7)
    want = [a.uniform(low, high) for _ in range(100000)]
    state = np.random.get_state()
    try:
        np.random.set_state(b.get_state())
        got = [nt._uniform(low, high) for _ in range(100000)]
        after = np.random.get_state()
    finally:
        np.random.set_state(state)
    assert got == want and all(type(g) is type(w) for g, w in zip(got[:5], want[:5]))
    assert (after[1] == a.get_state()[1]).all() and after[2:] == a.get_state()[2:]
