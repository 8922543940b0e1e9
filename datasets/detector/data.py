"""Detector data: fold subsets of the one record file, YOLOv3 transforms, loaders.

All samples live in ``DATA/records/all.rec`` (docs/CONTRACTS.md); a fold selects items by
sample id. Training runs GluonCV's ``YOLO3DefaultTrainTransform`` (targets made in the
loader workers), by default as its numpy re-implementation, its constrained crop drawn
from GluonCV's distribution lazily (``datasets.detector.numpy_transform``; GluonCV's own
with the patches of
``datasets.detector.gluon_transform``), with random input shapes as in GluonCV's
``scripts/detection/yolo/train_yolo3.py``; ``ExtraAugment`` (the notes' rotation / noise /
sharpness ...) runs before it on the uint8 image and its boxes. Validation resizes to
``data_shape`` and carries the original size along, so predictions map back to half pixels.
"""
import copy
import itertools
import logging
import os
import random

import numpy as np
import mxnet as mx
from mxnet import gluon, recordio

# GluonCV-path wrappers, importable from here as before
from datasets.detector.gluon_transform import FastCrop, LimitedExpand  # noqa: F401
from datasets.detector.numpy_transform import grey_view

log = logging.getLogger(__name__)

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


class RecordSubset(gluon.data.Dataset):
    """Items ``indices`` of a ``RecordFileDetection``: (uint8 HWC RGB image, (N, 6) label).

    Label columns are GluonCV's ``x1, y1, x2, y2, cls, difficult`` in pixels. Images come as
    NDArrays, or as numpy arrays to a transform with ``numpy_input`` (see :meth:`transform`).

    Forked loader workers inherit one random state, so every worker would draw the same
    augmentations (MXNET_TRAPS 13; MXNet 1.9.1 has no worker_init_fn), and which worker gets
    which batch is up to the pool. Keys from :class:`SplitSampler` are ``(index, epoch)``:
    ``__getitem__`` then seeds ``random`` and ``numpy`` (the generators GluonCV's transforms
    and ``ExtraAugment`` draw from) from ``(seed, epoch, index)``, so an item's augmentation
    is the same with 0, 1 or 4 workers and in every run. A plain int key leaves the random
    state alone (validation).

    ``max_side`` shrinks larger images (boxes scaled alike) before any augmentation: GluonCV's
    train transform colour-jitters, expands (up to 4x) and crops at full resolution and only
    then resizes to the input size, so on ~500 px halves trained at 128-256 px most of the
    loader's time went into pixels that the final resize throws away.
    """

    def __init__(self, records, indices, seed=0, max_side=None, cache=False):
        self._records = records
        self._indices = list(indices)
        self._seed = int(seed)
        self._pid = os.getpid()
        self._max_side = int(max_side) if max_side else None
        # Decoded (and shrunk) images kept as numpy arrays, made before any loader forks, so
        # workers share them copy-on-write: JPEG decoding and the area resize are then paid
        # once per image instead of once per epoch. A grey image keeps one plane
        # (numpy_transform.grey_view), which the numpy YOLO transform crops and resizes once.
        self._numpy = False  # images as numpy arrays (see ``transform``)
        self._cache = None
        if cache:
            self._cache = [(grey_view(_read_only(img.asnumpy())), np.asarray(label))
                           for img, label in
                           (self._load(i) for i in range(len(self._indices)))]

    def __len__(self):
        return len(self._indices)

    def _reseed(self, key):
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            import cv2
            cv2.setNumThreads(0)  # one thread per worker (MXNET_TRAPS 30)
        if isinstance(key, tuple):
            i, epoch = key
            state = np.random.SeedSequence([self._seed, int(epoch), int(i)]).generate_state(1)
            random.seed(int(state[0]))
            np.random.seed(int(state[0]))
            return int(i)
        return key

    def _load(self, i):
        img, label = self._records[self._indices[i]]
        if self._max_side:
            img, label = shrink(img, label, self._max_side)
        return img, label

    def transform(self, fn, lazy=True):
        """Gluon's ``Dataset.transform``; a ``fn`` with a true ``numpy_input`` attribute
        (``TrainTransform`` of the numpy YOLO transform) gets the images as numpy arrays
        instead of NDArrays: a view of this dataset that skips the ``mx.nd.array`` copy
        (~0.2 ms an image) of the cached image."""
        if getattr(fn, "numpy_input", False) and not self._numpy:
            view = copy.copy(self)
            view._numpy = True
            return super(RecordSubset, view).transform(fn, lazy)
        return super().transform(fn, lazy)

    def __getitem__(self, key):
        i = self._reseed(key)
        if self._cache is None:
            img, label = self._load(i)
            return (img.asnumpy() if self._numpy else img), label
        img, label = self._cache[i]
        if not self._numpy:
            img = mx.nd.array(img, dtype=np.uint8)
        return img, np.array(label, copy=True)


def _read_only(a):
    # numpy transforms get the cached array itself: an augmentation writing into it would
    # change the image for every later epoch, so make that an error
    a.flags.writeable = False
    return a


def shrink(img, label, max_side):
    """Resize ``img`` (HWC NDArray) so its longer side is at most ``max_side`` (area
    interpolation), scaling the ``x1, y1, x2, y2`` columns of ``label`` alike."""
    h, w = img.shape[:2]
    scale = max_side / float(max(h, w))
    if scale >= 1:
        return img, label
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    label = np.array(label, dtype=np.float32, copy=True)
    label[:, (0, 2)] *= nw / float(w)
    label[:, (1, 3)] *= nh / float(h)
    return mx.image.imresize(img, nw, nh, interp=3), label


class DetectionData:
    """A prepared DATA folder opened once per process: records, ids, splits, transforms.

    Parameters
    ----------
    data_dir : str or Path
        ``prepare_data.py`` output (``records/all.rec``, ``manifest.csv``, ``splits.json``).
    classes : list of str
    make_transform_net : callable
        ``(anchors=None) -> net``: a fresh, initialised, never hybridised detector
        (``models.yolo.transform_net``); the train transforms are built from it once per
        input size and anchors and reused by every job.
    """

    def __init__(self, data_dir, classes, make_transform_net):
        from datasets.prepared.folder import read_splits
        from im2rec_tools.records import load_detection_records

        self.records, self.ids = load_detection_records(data_dir)
        self.splits = read_splits(data_dir)
        self.classes = list(classes)
        self._make_net = make_transform_net
        self._transforms = {}

    def subset(self, sample_ids, seed=0, max_side=None, cache=False):
        """``RecordSubset`` of the given sample ids (in that order); ``cache`` decodes them
        now and keeps them in memory."""
        from im2rec_tools.records import subset_indices
        return RecordSubset(self.records, subset_indices(self.ids, sample_ids), seed, max_side,
                            cache)

    def transforms(self, data_shape, random_shape=True, extra=None, max_expand=4.0,
                   anchors=None, crop="sampled"):
        """Train transforms for ``random_shapes(data_shape, random_shape)``, with ``extra``;
        ``anchors`` (``(9, 2)``, default the network's) decide the target assignment;
        ``crop``: see :func:`train_transforms`."""
        anchor_key = None if anchors is None else tuple(np.asarray(anchors, float).ravel())
        key = (int(data_shape), bool(random_shape), float(max_expand), anchor_key, crop)
        if key not in self._transforms:
            net = self._make_net() if anchors is None else self._make_net(anchors)
            self._transforms[key] = train_transforms(
                net, random_shapes(data_shape, random_shape), max_expand=max_expand,
                crop=crop)
        return [TrainTransform(t._yolo, extra) for t in self._transforms[key]]

    def cache_bytes(self, sample_ids, max_side=None):
        """Bytes the decoded images of ``sample_ids`` take, shrunk to ``max_side``."""
        _, sizes = self.ground_truth(sample_ids, with_sizes=True)
        total = 0.0
        for w, h in sizes.values():
            scale = min(1.0, max_side / float(max(w, h))) if max_side else 1.0
            total += 3 * round(w * scale) * round(h * scale)
        return int(total)

    def ground_truth(self, sample_ids, with_sizes=False):
        """``read_ground_truth`` of the given sample ids."""
        from im2rec_tools.records import subset_indices
        return read_ground_truth(self.records, subset_indices(self.ids, sample_ids), self.ids,
                                 with_sizes)


def read_ground_truth(records, indices, ids, with_sizes=False):
    """Ground truth in half pixels from the record headers, without decoding the images.

    Parameters
    ----------
    records : gluoncv.data.RecordFileDetection
    indices : list of int
        Dataset positions.
    ids : list of str
        Sample id of every dataset item.
    with_sizes : bool
        Also return ``id -> (width, height)``.

    Returns
    -------
    dict
        ``id -> {"boxes": (N, 4) float, "labels": (N,) int, "difficult": (N,) bool}``
        (the ``eval.detection`` ground-truth layout); with ``with_sizes`` a pair
        ``(gt, sizes)``.
    """
    from gluoncv.data.recordio.detection import _transform_label

    gt, sizes = {}, {}
    for i in indices:
        header, _ = recordio.unpack(records._record.read_idx(records._record.keys[i]))
        label = np.asarray(header.label, dtype=np.float64).ravel()
        width, height = label[2], label[3]  # .lst header: A=4 -> W, H (docs/CONTRACTS.md)
        obj = _transform_label(label, height, width)
        difficult = obj[:, 5] > 0 if obj.shape[1] > 5 else np.zeros(len(obj), bool)
        gt[ids[i]] = {"boxes": obj[:, :4].astype(np.float64),
                      "labels": obj[:, 4].astype(int), "difficult": difficult}
        sizes[ids[i]] = (float(width), float(height))
    return (gt, sizes) if with_sizes else gt


class TrainTransform:
    """``ExtraAugment`` (optional) on the uint8 image and its boxes, then a GluonCV YOLOv3
    train transform. Module level so loader workers can unpickle it (MXNET_TRAPS 16).

    ``numpy_input`` (the YOLO transform's): ``RecordSubset.transform`` then hands it numpy
    images; ``ExtraAugment`` returns the kind of image it is given."""

    def __init__(self, yolo_transform, extra=None):
        self._yolo = yolo_transform
        self._extra = extra
        self.numpy_input = bool(getattr(yolo_transform, "numpy_input", False))

    def __call__(self, img, label):
        return self._yolo(*self._extra_augment(img, label))

    def _extra_augment(self, img, label):
        if self._extra is not None:
            # ExtraAugment keeps at least one box (skips a rotation that would drop all),
            # which the YOLO target generator needs.
            img, label = self._extra(img, label)
        return img, label

    @property
    def batched(self):
        """Whether the YOLO transform splits into a per-image ``draw`` and a per-batch
        ``finish`` (the numpy one, built with a net), which the training loader then uses."""
        return bool(getattr(self._yolo, "batchable", False))

    def draw(self, img, label):
        return self._yolo.draw(*self._extra_augment(img, label))


class DrawStage:
    """The per-image stage of a batched ``TrainTransform`` as a dataset transform (module
    level, so loader workers unpickle it); ``train_batchify`` finishes the batch."""

    def __init__(self, transform):
        self._t = transform
        self.numpy_input = transform.numpy_input

    def __call__(self, img, label):
        return self._t.draw(img, label)


class ValTransform:
    """GluonCV's YOLOv3 val transform plus the original ``(width, height)`` of the image."""

    def __init__(self, width, height):
        from gluoncv.data.transforms.presets.yolo import YOLO3DefaultValTransform
        self._t = YOLO3DefaultValTransform(width, height, mean=IMAGE_MEAN, std=IMAGE_STD)

    def __call__(self, img, label):
        h, w = img.shape[:2]
        x, y = self._t(img, label)
        return x, y, np.array([w, h], dtype=np.float32)


def random_shapes(data_shape, random_shape=True):
    """Training input sizes: multiples of 32 in about [0.75, 1.5] x ``data_shape``.

    For 416 this is GluonCV's 320..608; ``random_shape=False`` gives ``[data_shape]``.
    """
    if data_shape % 32:
        raise ValueError(f"--data-shape must be a multiple of 32 (YOLOv3 strides), "
                         f"got {data_shape}")
    if not random_shape:
        return [data_shape]
    lo = max(32, int(np.ceil(0.75 * data_shape / 32)) * 32)
    hi = int(np.floor(1.5 * data_shape / 32)) * 32
    return list(range(lo, hi + 1, 32))


def train_transforms(net, shapes, extra=None, max_expand=4.0, numpy_targets=True,
                     numpy_transform=True, crop="sampled"):
    """One ``TrainTransform`` per input size.

    ``net`` must be fresh, initialised and never hybridised (``models.yolo.transform_net``):
    GluonCV runs it once in train mode for anchors and offsets (MXNET_TRAPS 15).
    ``max_expand`` is the largest zoom-out of GluonCV's random expand (4, its default; 1 = off).
    ``numpy_transform`` (default) runs ``datasets.detector.numpy_transform``: GluonCV's
    transform with the same draws in numpy and OpenCV, on numpy images, with numpy targets
    (its NDArray operations were most of the loader's time). With ``numpy_transform=False``
    GluonCV's own transform runs; ``numpy_targets`` then swaps its NDArray target generator
    for the equal, faster numpy one of ``models.yolo_targets``. ``crop`` (numpy transform
    only): ``"sampled"`` (default) draws the constrained crop from GluonCV's distribution for a
    few percent of its cost, ``"gluoncv"`` with GluonCV's exact draws, so that the whole
    sample equals GluonCV's transform's
    (``datasets.detector.fast_crop``).
    """
    return [TrainTransform(_yolo_train_transform(s, net, max_expand, numpy_targets,
                                                 numpy_transform, crop), extra)
            for s in shapes]


def _yolo_train_transform(size, net, max_expand, numpy_targets=True, numpy_transform=True,
                          crop="sampled"):
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
    t = YOLO3DefaultTrainTransform(size, size, net, mean=IMAGE_MEAN, std=IMAGE_STD, mixup=False)
    if numpy_targets or numpy_transform:
        from models.yolo_targets import fast_targets
        t = fast_targets(t)
    if numpy_transform:
        from datasets.detector.numpy_transform import NumpyYOLO3TrainTransform
        return NumpyYOLO3TrainTransform(t, max_expand, crop)
    if float(max_expand) != 4.0:
        t = LimitedExpand(t, max_expand)
    return FastCrop(t)


class SplitSampler(gluon.data.sampler.Sampler):
    """Part ``part_index`` of a seeded permutation per epoch; equal part lengths.

    Distributed workers must run the same number of batches or dist_sync hangs at the end
    of an epoch (MXNET_TRAPS 33); gluon 1.9.1 ships no such sampler (GluonCV's keeps fixed
    parts). All workers draw the same permutation (from ``seed`` and the epoch) and take
    disjoint slices of length ``length // num_parts``. With ``num_parts=1`` it is a seeded
    shuffle. Call ``set_epoch`` before each pass (a resumed run then repeats the same
    order); without it each pass advances one epoch.
    """

    def __init__(self, length, num_parts=1, part_index=0, seed=0):
        if not 0 <= part_index < num_parts:
            raise ValueError(f"part_index {part_index} outside 0..{num_parts - 1}")
        self._length = int(length)
        self._parts = int(num_parts)
        self._part = int(part_index)
        self._seed = int(seed)
        self._epoch = 0
        self.part_len = self._length // self._parts

    def set_epoch(self, epoch):
        self._epoch = int(epoch)

    def __iter__(self):
        epoch = self._epoch
        perm = np.random.RandomState((self._seed + 7919 * epoch) % (2 ** 31)) \
            .permutation(self._length)
        self._epoch += 1
        start = self.part_len * self._part
        # (index, epoch) keys: RecordSubset seeds each item's augmentation from them.
        return iter([(i, epoch) for i in perm[start:start + self.part_len].tolist()])

    def __len__(self):
        return self.part_len


def train_batchify(transforms=()):
    """Stack image and the 5 YOLO targets, pad the gt boxes (GluonCV train_yolo3's batchify,
    in numpy for numpy samples: ``datasets.detector.numpy_transform.TrainBatchify``); with
    the batched ``transforms`` (``TrainTransform``), it also finishes their drawn samples."""
    from datasets.detector.numpy_transform import TrainBatchify
    return TrainBatchify([t._yolo for t in transforms if getattr(t, "batched", False)])


def val_batchify():
    from gluoncv.data.batchify import Pad, Stack, Tuple
    return Tuple(Stack(), Pad(pad_val=-1), Stack())


def train_loader(dataset, transforms, batch_size, num_workers=0, sampler=None, interval=10,
                 thread=False, burst=1):
    """Training loader; several transforms mean random input shapes.

    Parameters
    ----------
    dataset : RecordSubset
    transforms : list of TrainTransform
        One per input size (``train_transforms``). With more than one, GluonCV's
        ``RandomTransformDataLoader`` switches size every ``interval`` batches.
    batch_size : int
        Per process; must not exceed ``len(sampler or dataset)``.
    num_workers : int
        Forked loader processes (0 = load in this process).
    sampler : SplitSampler, optional
        Default: a seeded shuffle over the whole dataset.
    thread : bool
        With ``num_workers=0`` and one input size: load in one background thread of this
        process (Gluon's ``thread_pool``), so the next batches are made while the training
        step computes, with no process to compete with and no batch to ship (on 2 cores,
        bench/bench_train_loop.py). One thread only: the per-item seeding reseeds the
        process's global generators, which two threads would interleave; for the same
        reason the training thread must not draw from ``random`` or ``np.random`` while
        it iterates (train_yolo3's loop does not: tests/test_train_yolo3.py trains the
        same model with and without the thread). GluonCV's random-shape loader has no
        thread pool: with several transforms it loads in the training process.
    burst : int
        With ``num_workers=0`` and no thread: load this many batches at a time in the
        training process (:class:`BurstLoader`; same batches); 1 = one before each step.

    Returns
    -------
    DataLoader
        Yields ``(img, obj_t, center_t, scale_t, weight_t, class_t, gt_boxes)`` batches; the
        last partial batch rolls over into the next epoch (constant batch size).
    """
    sampler = sampler or SplitSampler(len(dataset))
    if batch_size > len(sampler):
        raise ValueError(f"batch size {batch_size} exceeds the {len(sampler)} training "
                         f"images of this process; lower --batch-size")
    if thread and num_workers:
        raise ValueError(f"a loader thread loads in the training process: it takes 0 loader "
                         f"processes, got {num_workers}")
    if burst > 1 and (thread or num_workers):
        raise ValueError("burst loading is loading in the training process: it takes 0 loader "
                         f"processes and no thread, got {num_workers} and thread={thread}")
    batchify = train_batchify(transforms)
    if all(getattr(t, "batched", False) for t in transforms):
        # draw per image; flip, normalise and make targets per batch (in the batchify)
        transforms = [DrawStage(t) for t in transforms]
    if len(transforms) == 1:
        loader = gluon.data.DataLoader(
            dataset.transform(transforms[0]), batch_size=batch_size, sampler=sampler,
            last_batch="rollover", batchify_fn=batchify,
            num_workers=1 if thread else num_workers, thread_pool=bool(thread))
    else:
        from gluoncv.data.dataloader import RandomTransformDataLoader
        loader = RandomTransformDataLoader(
            transforms, dataset, interval=interval, batch_size=batch_size, sampler=sampler,
            last_batch="rollover", batchify_fn=batchify, num_workers=num_workers)
    return BurstLoader(loader, burst) if burst > 1 else loader


class BurstLoader:
    """``loader``'s batches, made ``burst`` at a time: the training process loads several
    batches, then trains on them, instead of loading one before each step. The same batches
    in the same order (it only reads ahead within an epoch). Why: after a training step the
    loader's Python and numpy work runs on caches the step has just filled with its own data,
    and ran about 1.8x slower than the loader alone (0.60 against 0.33 ms an image, measured
    on a 2-core AMD EPYC with AVX2 kernels); in bursts of 8 batches, 0.47
    (bench/bench_train_loop.py's ``burst`` mode, README "Benchmarks")."""

    def __init__(self, loader, burst):
        if int(burst) < 1:
            raise ValueError(f"burst must be at least 1 batch, got {burst}")
        self._loader, self.burst = loader, int(burst)

    def __len__(self):
        return len(self._loader)

    def __iter__(self):
        batches = iter(self._loader)
        while True:
            ahead = list(itertools.islice(batches, self.burst))
            if not ahead:
                return
            yield from ahead


def val_loader(dataset, data_shape, batch_size, num_workers=0):
    """Validation/prediction loader in dataset order: ``(img, label, orig_wh)`` batches."""
    return gluon.data.DataLoader(
        dataset.transform(ValTransform(data_shape, data_shape)), batch_size=batch_size,
        shuffle=False, last_batch="keep", batchify_fn=val_batchify(), num_workers=num_workers)


def close_loader(loader):
    """Stop a loader's worker pool now rather than at garbage collection."""
    pool = getattr(loader, "_worker_pool", None)
    if pool is not None:
        pool.terminate()
        loader._worker_pool = None
