"""GluonCV's YOLOv3 train transform in numpy and OpenCV, with the same random draws.

``YOLO3DefaultTrainTransform.__call__`` runs dozens of small MXNet NDArray operations per
image (10-50 us of Python and engine overhead each, ``mx.nd.array`` about 200 us): at 128 px
inputs the loader spent ~4-6 ms an image where a CPU training step costs ~10, so the
training loop waited on it. :class:`NumpyYOLO3TrainTransform` does the same steps on numpy
float32 channel planes (``(3, H, W)``, the layout the network takes):

1. colour distortion (``gluoncv.data.transforms.experimental.image.random_color_distort``),
2. random expand with probability 0.5 (``gluoncv.data.transforms.image.random_expand``,
   capped at ``max_expand`` as ``datasets.detector.gluon_transform.LimitedExpand`` does),
3. constrained random crop (``datasets.detector.fast_crop``: by default drawn from GluonCV's
   distribution lazily, ``crop="gluoncv"`` with GluonCV's exact draws) and
   ``mx.image.fixed_crop``,
4. resize to the input size with a random OpenCV interpolation
   (``gluoncv.data.transforms.image.imresize``), one plane at a time,
5. random horizontal flip (``gluoncv.data.transforms.image.random_flip``),
6. ``mx.nd.image.to_tensor`` and ``normalize``, then the training targets
   (``models.yolo_targets``, numpy out).

The training loader runs steps 1-5's draws and pixel work per image (``draw``, in the
dataset, where keyed seeding fixes each image's draws) and the flip's pixels, step 6 and the
stacking per batch (``finish``, in the batchify): one numpy call over a batch instead of one
per image, the same values (tests/test_numpy_transform.py).

With ``crop="gluoncv"`` it draws the same numbers from Python's ``random`` and numpy's global
generator, in the same order, so a seeded sample gets the same augmentation as with GluonCV's
transform (the default crop draws other numbers from the same distribution, at ~1/15 of the
cost: the GluonCV crop was ~80 % of the loader's time at 128 px); the
box arithmetic is GluonCV's own (``gluoncv.data.transforms.bbox``) and the float32 pixel
arithmetic follows MXNet's order (scalars rounded to float32 first, the saturation grey
level summed with MXNet's Kahan summation), so boxes and targets are equal and the image
equal up to the resize (to the bit on an Intel CPU; to a few float32 ulps on an AMD EPYC,
where MXNet's kernels round differently), where MXNet's built-in OpenCV 3.4.2 and the cv2
package differ by ~1e-4 (bilinear, bicubic; tests/test_numpy_transform.py compares both
paths).

All pixel operations but the resize act on each pixel alone, and the expand fill is not
colour-distorted, so the colour distortion runs only on the part of the source image the
crop keeps, placed on a crop-sized canvas of fill: the same values as distorting,
expanding and cropping the whole image, for a fraction of the pixels. A grey image cached
as one plane (:func:`grey_view`, B-mode images) is cropped, distorted and resized as that
one plane until the hue rotation or the expand fill makes three: the same values again.

:class:`TrainBatchify` is GluonCV's train batchify for the numpy samples, and finishes drawn
ones.
"""
import collections
import multiprocessing
import random

import cv2
import mxnet as mx
import numpy as np
from gluoncv.data.transforms import bbox as tbbox

from datasets.detector.fast_crop import random_crop_with_constraints, \
    sample_crop_with_constraints

#: The constrained crop: GluonCV's distribution drawn lazily (default), or GluonCV's exact draws.
CROPS = {"sampled": sample_crop_with_constraints, "gluoncv": random_crop_with_constraints}

# random_color_distort's constants (its default arguments)
_BRIGHTNESS_DELTA, _CONTRAST, _SATURATION, _HUE_DELTA = 32, (0.5, 1.5), (0.5, 1.5), 18
_GREY = np.array([0.299, 0.587, 0.114], np.float32)  # nd.array of GluonCV's weights
_TYIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]])
_ITYIQ = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.107, 1.705]])


class _Shaped:
    """Shape-only stand-in for the transform's fake image and feature maps: the numpy target
    generator reads only their shapes, and this pickles in bytes (the transform is pickled
    into the loader workers with every batch under random input shapes)."""

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)


def _uniform(low, high):
    """``np.random.uniform(low, high)`` (a scalar): the same number and generator state
    (numpy's legacy ``random_uniform`` is ``low + (high - low) * next_double``), for a
    sixth of the call's cost; tests/test_numpy_transform.py compares both."""
    return low + (high - low) * np.random.random_sample()


def draw_color_distort():
    """The draws of GluonCV's ``random_color_distort``, without touching pixels.

    Same calls in the same order: brightness, then ``np.random.randint(0, 2)`` choosing
    contrast-saturation-hue or saturation-hue-contrast; each step draws
    ``np.random.uniform(0, 1) > 0.5`` and, when applied, its factor (hue's angle from
    Python's ``random``, the others from numpy).

    Returns
    -------
    list of (str, value)
        The operations :func:`apply_color_distort` applies, in order.
    """
    ops = []

    def brightness():
        if _uniform(0, 1) > 0.5:
            ops.append(("add", _uniform(-_BRIGHTNESS_DELTA, _BRIGHTNESS_DELTA)))

    def contrast():
        if _uniform(0, 1) > 0.5:
            ops.append(("mul", _uniform(*_CONTRAST)))

    def saturation():
        if _uniform(0, 1) > 0.5:
            ops.append(("saturation", _uniform(*_SATURATION)))

    def hue():
        if _uniform(0, 1) > 0.5:
            alpha = random.uniform(-_HUE_DELTA, _HUE_DELTA)
            u, w = np.cos(alpha * np.pi), np.sin(alpha * np.pi)
            bt = np.array([[1.0, 0.0, 0.0], [0.0, u, -w], [0.0, w, u]])
            # float64 like GluonCV's, then float32 like its nd.array(t)
            ops.append(("hue", np.dot(np.dot(_ITYIQ, bt), _TYIQ).T.astype(np.float32)))

    brightness()
    if np.random.randint(0, 2):
        contrast(), saturation(), hue()
    else:
        saturation(), hue(), contrast()
    return ops


def apply_color_distort(src, ops):
    """``ops`` of :func:`draw_color_distort` on ``src``, a float32 ``(3, H, W)`` image (changed
    in place or replaced); returns the image. GluonCV's pixel operations with MXNet's float32
    arithmetic, on channel planes (contiguous, unlike HWC's channel slices).

    A ``(1, H, W)`` ``src`` stands for a grey image, three equal planes: every operation but
    the hue rotation keeps the planes equal and runs on the one plane, and the hue rotation
    makes the three (the values of the three-plane image, a third of the work before it).

    MXNet rounds a scalar operand to float32 before the operation (as numpy does for a
    Python float and a float32 array); ``mx.nd.sum`` over the channels is a Kahan sum;
    ``nd.dot`` with the 3x3 hue matrix sums the three products left to right.
    """
    for op, value in ops:
        planes = len(src)  # plane k of the image is src[k % planes]
        if op == "add":
            src += value
        elif op == "mul":
            src *= value
        elif op == "saturation":
            # gray = sum(src * [0.299, 0.587, 0.114], axis=channel) as mshadow's red::sum
            # does it: dst = 0, residual = 0; per term y = x - residual; t = dst + y;
            # residual = (t - dst) - y; dst = t (the first term leaves dst = x, residual 0)
            gray = src[0] * _GREY[0]
            residual = np.zeros_like(gray)
            for k in (1, 2):
                y = src[k % planes] * _GREY[k]
                y -= residual
                t = gray + y
                residual = t - gray
                residual -= y
                gray = t
            gray *= (1.0 - value)
            src *= value
            src += gray
        else:
            out = np.empty((3,) + src.shape[1:], src.dtype)
            for j in range(3):
                out[j] = src[0] * value[0, j]
                out[j] += src[1 % planes] * value[1, j]
                out[j] += src[2 % planes] * value[2, j]
            src = out
    return src


def grey_view(img):
    """``img`` (HWC uint8 numpy) as one plane broadcast to its three channels (read-only,
    a third of the memory) when its channels are equal, as B-mode images are; else ``img``.
    :class:`NumpyYOLO3TrainTransform` crops, distorts and resizes such an image one plane at
    a time until the colour distortion makes three (:func:`apply_color_distort`)."""
    if img.ndim != 3 or img.shape[2] != 3 or is_grey_view(img):
        return img
    if not ((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()):
        return img
    return np.broadcast_to(np.ascontiguousarray(img[..., :1]), img.shape)


def is_grey_view(img):
    """Whether ``img`` is a :func:`grey_view` (three channels sharing one plane)."""
    return isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and \
        img.strides[2] == 0


class Drawn(collections.namedtuple("Drawn", "image flip bbox")):
    """A sample drawn by :meth:`NumpyYOLO3TrainTransform.draw`, for ``finish`` to batch:
    ``image`` float32 ``(3, H, W)`` resized to the input size, before its flip and
    normalisation; ``flip`` whether to mirror it; ``bbox`` its boxes, already mirrored."""
    __slots__ = ()


class NumpyYOLO3TrainTransform:
    """GluonCV's ``YOLO3DefaultTrainTransform`` in numpy and OpenCV.

    Parameters
    ----------
    gluon_transform : YOLO3DefaultTrainTransform
        Built for the input size and network (``datasets.detector.data``); gives the input
        width and height, mean and std, and the anchors and layer shapes the targets need.
        Its target generator is used when it is the numpy one with numpy output
        (``models.yolo_targets.fast_targets``), otherwise a new one is made.
    max_expand : float
        Largest zoom-out of the random expand: 4 is GluonCV's, 1 none (the ``> 0.5`` draw
        is still made, as with ``LimitedExpand``).

    Call ``t(img, label)``: ``img`` HWC uint8 image (numpy or NDArray), ``label`` ``(N, 6)``
    boxes ``x1, y1, x2, y2, cls, difficult`` in pixels. Returns numpy arrays ``(img (3, H, W)
    float32, objectness, center, scale, weights, class_targets, gt_boxes (M, 4) float32)``
    like GluonCV's transform (``(img, boxes)`` for a transform built without a net).

    The training loader splits the call: ``draw`` per image in the dataset (every random
    draw, so keyed seeding still fixes an image's augmentation), ``finish`` per batch in
    the batchify (:class:`TrainBatchify`), which gives the stacked ``__call__`` samples.
    """

    #: RecordSubset hands this transform numpy images (no NDArray round trip).
    numpy_input = True

    def __init__(self, gluon_transform, max_expand=4.0, crop="sampled"):
        if max_expand < 1:
            raise ValueError(f"max_expand must be >= 1 (1 = no expand), got {max_expand}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {sorted(CROPS)}, got {crop!r}")
        self.crop = crop
        from models.yolo_targets import NumpyYOLOV3TargetGenerator
        t = gluon_transform
        self.max_expand = float(max_expand)
        self._width, self._height = int(t._width), int(t._height)
        # float32, as MXNet's normalize and to_tensor take them
        self._mean = np.array(t._mean, np.float32).reshape(3, 1, 1)
        self._std = np.array(t._std, np.float32).reshape(3, 1, 1)
        # random_expand's fill, per channel plane
        self._fill = np.array([m * 255 for m in t._mean], np.float32).reshape(3, 1, 1)
        self._mixup = bool(t._mixup)
        self._targets = None
        if not t._net_none:
            gen = t._internal_target_generator
            if not (isinstance(gen, NumpyYOLOV3TargetGenerator) and not gen._ndarray):
                gen = NumpyYOLOV3TargetGenerator(t._num_classes, ndarray=False)
            self._targets = gen
            self._fake_x = _Shaped(t._fake_x.shape)
            self._feat_maps = [_Shaped(x.shape) for x in t._feat_maps]
            self._anchors = [a.asnumpy() for a in t._anchors]

    def __call__(self, img, label):
        drawn = self.draw(img, label)
        if self._targets is None:
            return self._images([drawn])[0], drawn.bbox.astype(np.float32)
        batch = self.finish([drawn])
        return tuple(a[0] for a in batch)

    @property
    def batchable(self):
        """Whether :meth:`finish` applies: a transform built with a net (it makes targets)."""
        return self._targets is not None

    def draw(self, img, label):
        """The per-image part of :meth:`__call__`: every random draw, and the pixels up to
        the resize. Returns a :class:`Drawn` (the input-size image before the flip and
        normalisation, the flip, the boxes after it); :meth:`finish` completes a batch."""
        src = img.asnumpy() if hasattr(img, "asnumpy") else np.asarray(img)
        h, w = src.shape[:2]
        colour = draw_color_distort()

        # random_expand: canvas (ow, oh) with the image at (ox, oy)
        ox, oy, ow, oh = 0, 0, w, h
        if _uniform(0, 1) > 0.5:
            if self.max_expand > 1:
                ratio = random.uniform(1, self.max_expand)  # keep_ratio: one ratio
                oh, ow = int(h * ratio), int(w * ratio)
                oy = random.randint(0, oh - h)
                ox = random.randint(0, ow - w)
            bbox = tbbox.translate(label, x_offset=ox, y_offset=oy)
        else:
            bbox = label

        bbox, (x0, y0, cw, ch) = CROPS[self.crop](bbox, (ow, oh))
        planes = self._crop(src, colour, (ox, oy), (x0, y0, cw, ch))

        interp = int(np.random.randint(0, 5))  # MXNet hands 0-4 to OpenCV as they are
        x = np.empty((3, self._height, self._width), np.float32)
        for c, plane in enumerate(planes):  # per plane: the result is CHW already
            cv2.resize(plane, (self._width, self._height), dst=x[c], interpolation=interp)
        if len(planes) == 1:  # a grey image still grey: three equal planes
            x[1:] = x[0]
        bbox = tbbox.resize(bbox, (cw, ch), (self._width, self._height))

        # random_flip(px=0.5): np.random.choice draws flip_y (p = 0) then flip_x, one
        # random_sample each; choice picks True when the sample is >= the cdf's 0.5
        np.random.random_sample()
        flip = bool(np.random.random_sample() >= 0.5)
        if flip:
            bbox = tbbox.flip(bbox, (self._width, self._height), flip_x=True)
        return Drawn(x, flip, bbox)

    def finish(self, drawn):
        """The batch part of :meth:`__call__` for samples of :meth:`draw`: flip,
        ``to_tensor`` and ``normalize`` on the stacked images, and the targets of all boxes
        in one call (per image, these and the stacking took about a quarter of the numpy
        loader's time, profiled at 128 px). Returns
        numpy float32 ``(img (B, 3, H, W), objectness, center, scale, weights,
        class_targets, gt_boxes (B, M, 4))``, the boxes padded with -1 as GluonCV's
        batchify pads them: the values of stacking :meth:`__call__`'s samples."""
        x = self._images(drawn)
        bbox = _pad([d.bbox for d in drawn], np.float32)
        boxes = bbox[..., :4]  # mx.nd.array(bbox[np.newaxis, :, :4]) per image
        ids = bbox[..., 4:5]
        mix = bbox[..., -1:] if self._mixup else None
        obj, center, scale, weights, cls = self._targets(
            self._fake_x, self._feat_maps, self._anchors, None, boxes, ids, mix)
        return x, obj, center, scale, weights, cls, np.ascontiguousarray(boxes)

    def _images(self, drawn):
        x = np.empty((len(drawn),) + drawn[0].image.shape, np.float32)
        for k, d in enumerate(drawn):  # stacked and mirrored in one copy
            x[k] = d.image[:, :, ::-1] if d.flip else d.image
        x /= np.float32(255)  # to_tensor
        x -= self._mean       # normalize
        x /= self._std
        return x

    def _crop(self, src, colour, offset, crop):
        """``fixed_crop(expand(distort(src)), crop)`` as a float32 ``(3, h, w)`` array,
        distorting only the source pixels inside the crop (see the module docstring);
        ``offset`` is the source image's place on the expanded canvas. ``(1, h, w)``, the
        value of all three planes, for a :func:`grey_view` ``src`` that the colour
        distortion keeps grey and that needs no expand fill (a colour per plane)."""
        ox, oy = offset
        x0, y0, cw, ch = crop
        h, w = src.shape[:2]
        # the crop in source coordinates, clipped to the source
        sx0, sy0 = max(x0 - ox, 0), max(y0 - oy, 0)
        sx1, sy1 = max(min(x0 + cw - ox, w), sx0), max(min(y0 + ch - oy, h), sy0)
        if is_grey_view(src):
            part = src[np.newaxis, sy0:sy1, sx0:sx1, 0].astype(np.float32)
        else:
            part = src[sy0:sy1, sx0:sx1].transpose(2, 0, 1).astype(np.float32, order="C")
        part = apply_color_distort(part, colour)
        if part.shape[1:] == (ch, cw):
            return part
        out = np.empty((src.shape[2], ch, cw), np.float32)
        out[...] = self._fill
        out[:, sy0 + oy - y0:sy1 + oy - y0, sx0 + ox - x0:sx1 + ox - x0] = part
        return out


class TrainBatchify:
    """GluonCV train_yolo3's batchify, ``Tuple(Stack() x 6, Pad(axis=0, pad_val=-1))``, with
    numpy stacking and padding: one NDArray per field and batch.

    GluonCV's ``Pad`` fills its output with one NDArray assignment per sample (~0.7 ms an
    image, profiled) and both it and ``Stack`` allocate in shared memory, slower to allocate
    than CPU memory and only needed to send a batch from a loader worker: here only in a
    worker. In the training process the stacked arrays become NDArrays without a copy
    (``mx.nd.from_numpy``; nothing else holds them). Same values, shapes and dtypes
    (``Stack`` float32, ``Pad`` the samples' dtype); samples holding NDArrays (GluonCV's own
    transform) go through GluonCV's batchify.

    ``finishers``: the :class:`NumpyYOLO3TrainTransform` of each input size, for batches of
    :class:`Drawn` samples (the loader's default), which the transform of their image size
    finishes.
    """

    def __init__(self, finishers=()):
        self._finish = {(t._height, t._width): t for t in finishers}

    def __call__(self, data):
        if isinstance(data[0], Drawn):
            size = data[0].image.shape[1:]
            if size not in self._finish:
                raise ValueError(f"no transform for drawn {size[0]}x{size[1]} images; "
                                 f"have {sorted(self._finish)}")
            return _ndarrays(self._finish[size].finish(data))
        fields = list(zip(*data))
        if any(isinstance(a, mx.nd.NDArray) for field in fields for a in field):
            from gluoncv.data.batchify import Pad, Stack, Tuple
            return Tuple(*([Stack() for _ in fields[:-1]] + [Pad(axis=0, pad_val=-1)]))(data)
        boxes = fields[-1]
        out = [np.stack(field).astype(np.float32, copy=False) for field in fields[:-1]]
        out.append(_pad(boxes, boxes[0].dtype))
        return _ndarrays(out)


def _pad(rows, dtype):
    """``rows`` (``(M_i, C)`` arrays) as one ``(B, max M_i, C)`` array of ``dtype``, padded
    with -1 rows as GluonCV's ``Pad(axis=0, pad_val=-1)`` pads them."""
    out = np.full((len(rows), max(len(r) for r in rows)) + rows[0].shape[1:], -1, dtype)
    for row, r in zip(out, rows):
        row[:len(r)] = r
    return out


def _ndarrays(arrays):
    """NDArrays of numpy ``arrays``: without a copy in the training process, in shared
    memory in a loader worker (its batch is sent to the training process)."""
    if multiprocessing.parent_process() is None:
        return tuple(mx.nd.from_numpy(a, zero_copy=True) for a in arrays)
    shared = mx.Context("cpu_shared", 0)
    return tuple(mx.nd.array(a, ctx=shared, dtype=a.dtype) for a in arrays)
