"""YOLOv3 training targets in numpy: a drop-in for GluonCV's prefetch target generator.

``YOLO3DefaultTrainTransform`` builds the five training targets of every sample in the
loader with ``YOLOV3PrefetchTargetGenerator``, which runs dozens of tiny NDArray operations
and element assignments per box: about a third of the loader's time per image on this box
(profiled; the image augmentations take most of the rest). ``NumpyYOLOV3TargetGenerator``
computes the same arrays with numpy (``tests/test_yolo_targets.py`` compares them with
GluonCV's on random boxes and input sizes) and is called with the same arguments, so
``fast_targets(transform)`` only swaps the generator inside a GluonCV transform.

The rule (GluonCV, as in the YOLOv3 paper): each ground-truth box goes to the one anchor,
over all layers, whose zero-centred box has the highest IoU with the zero-centred gt box, in
the grid cell of that anchor's layer holding the gt centre. Targets there: centre offset in
the cell, ``log(max(w, 1) / anchor_w)`` (and h), weight ``2 - w * h / (W * H)``, objectness 1
(or the mixup ratio), one-hot class; every other class target is -1 (ignored).
"""
import numpy as np
import mxnet as mx


#: Up to this many boxes in a call the targets are written one box at a time.
LOOP_MAX_BOXES = 3


class NumpyYOLOV3TargetGenerator:
    """Callable like ``YOLOV3PrefetchTargetGenerator`` (``num_class`` foreground classes).

    ``__call__(img, xs, anchors, offsets, gt_boxes, gt_ids, gt_mixratio=None)`` with the
    transform's fake image, feature maps, anchors and offsets (NDArrays, batch 1; of the
    image and maps only the shapes are used) and the sample's ``(B, M, 4)`` boxes /
    ``(B, M, 1)`` ids (NDArrays or numpy); returns NDArrays ``objectness (B, N, 1)``,
    ``center_targets (B, N, 2)``, ``scale_targets (B, N, 2)``, ``weights (B, N, 2)``,
    ``class_targets (B, N, num_class)`` with ``N = sum_l H_l * W_l * A_l``; float32 numpy
    arrays instead with ``ndarray=False``: the loader's batchify stacks numpy targets into one
    NDArray per batch, where five ``mx.nd.array`` copies and five NDArray slices per image
    cost more than the targets themselves (profiled: ~0.3 ms an image at 128 px).
    """

    def __init__(self, num_class, ndarray=True):
        self._num_class = int(num_class)
        self._ndarray = bool(ndarray)
        self._layout = None  # per input size: anchors, layer sizes and offsets, numpy

    def _prepare(self, img, xs, anchors):
        # only the shapes of ``img`` and ``xs`` are read: NumpyYOLO3TrainTransform passes
        # shape-only stand-ins, lighter to pickle into loader workers than the NDArrays
        key = (tuple(img.shape), tuple(tuple(x.shape) for x in xs))
        if self._layout is None or self._layout[0] != key:
            anc = [_numpy(a).reshape(-1, 2).astype(np.float32) for a in anchors]
            sizes = [(int(x.shape[2]), int(x.shape[3])) for x in xs]
            counts = [h * w * len(a) for (h, w), a in zip(sizes, anc)]
            starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
            layer_of = np.concatenate([[k] * len(a) for k, a in enumerate(anc)])
            first = np.concatenate([[0], np.cumsum([len(a) for a in anc])]).astype(int)
            self._layout = (key, np.concatenate(anc), sizes, starts, layer_of, first)
        return self._layout[1:]

    def __call__(self, img, xs, anchors, offsets, gt_boxes, gt_ids, gt_mixratio=None):
        all_anchors, sizes, starts, layer_of, first = self._prepare(img, xs, anchors)
        height, width = int(img.shape[2]), int(img.shape[3])
        boxes = _numpy(gt_boxes).astype(np.float32)
        ids = _numpy(gt_ids)
        mix = _numpy(gt_mixratio) if gt_mixratio is not None else None
        batch, total, nc = boxes.shape[0], int(starts[-1]), self._num_class
        obj = np.zeros((batch, total, 1), np.float32)
        center = np.zeros((batch, total, 2), np.float32)
        scale = np.zeros((batch, total, 2), np.float32)
        weight = np.zeros((batch, total, 2), np.float32)
        cls = np.full((batch, total, nc), -1, np.float32)
        # float32 like GluonCV's BBoxCornerToCenter on NDArrays
        gw = boxes[..., 2] - boxes[..., 0]
        gh = boxes[..., 3] - boxes[..., 1]
        gx = boxes[..., 0] + gw / np.float32(2)
        gy = boxes[..., 1] + gh / np.float32(2)
        # IoU of zero-centred anchors and gt boxes: (B, M, A)
        inter = np.minimum(gw[..., None], all_anchors[:, 0]) * \
            np.minimum(gh[..., None], all_anchors[:, 1])
        union = gw[..., None] * gh[..., None] + all_anchors[:, 0] * all_anchors[:, 1] - inter
        matches = np.argmax(inter / union, axis=-1)
        # padding rows (-1) end a sample's list, as in GluonCV
        valid = np.cumprod((boxes >= 0).all(axis=-1), axis=1).astype(bool)
        out = (obj, center, scale, weight, cls)
        geometry = (gx, gy, gw, gh, matches, valid, width, height)
        layout = (all_anchors, sizes, starts, layer_of, first)
        # one box at a time costs ~30 us plus ~25 a box, the arrays ~100 us a call plus ~2 a
        # box (profiled): the loop for one image, the arrays for a loader's batch
        fill = _fill_loop if valid.sum() <= LOOP_MAX_BOXES else _fill_arrays
        fill(out, geometry, layout, ids, mix)
        return tuple(mx.nd.array(v) for v in out) if self._ndarray else out


def _fill_loop(out, geometry, layout, ids, mix):
    """Write the targets of every valid box, one box at a time, as GluonCV's loop does (the
    reference :func:`_fill_arrays` is tested against)."""
    obj, center, scale, weight, cls = out
    gx, gy, gw, gh, matches, valid, width, height = geometry
    all_anchors, sizes, starts, layer_of, first = layout
    for b, m in zip(*np.nonzero(valid)):
        a = int(matches[b, m])
        layer = int(layer_of[a])
        fh, fw = sizes[layer]
        x, y, w, h = gx[b, m], gy[b, m], gw[b, m], gh[b, m]
        loc_x, loc_y = int(x / width * fw), int(y / height * fh)
        n_anc = first[layer + 1] - first[layer]
        idx = starts[layer] + (loc_y * fw + loc_x) * n_anc + (a - first[layer])
        center[b, idx] = (x / width * fw - loc_x, y / height * fh - loc_y)
        scale[b, idx] = (np.log(max(w, 1) / all_anchors[a, 0]),
                         np.log(max(h, 1) / all_anchors[a, 1]))
        weight[b, idx] = 2.0 - w * h / width / height
        obj[b, idx, 0] = mix[b, m, 0] if mix is not None else 1
        cls[b, idx] = 0
        cls[b, idx, int(ids[b, m, 0])] = 1


def _fill_arrays(out, geometry, layout, ids, mix):
    """:func:`_fill_loop` with array operations over all boxes of the batch: the same float32
    and float64 steps (numpy computes a float32 scalar with a Python number in float64), so
    the same bits (tests/test_yolo_targets.py)."""
    obj, center, scale, weight, cls = out
    gx, gy, gw, gh, matches, valid, width, height = geometry
    all_anchors, sizes, starts, layer_of, first = layout
    b, m = np.nonzero(valid)
    if not len(b):
        return
    a = matches[b, m]
    layer = layer_of[a]
    fh = np.array([s[0] for s in sizes])[layer]
    fw = np.array([s[1] for s in sizes])[layer]
    x, y = gx[b, m].astype(np.float64), gy[b, m].astype(np.float64)
    w, h = gw[b, m], gh[b, m]
    loc_x = (x / width * fw).astype(np.int64)
    loc_y = (y / height * fh).astype(np.int64)
    idx = starts[layer] + (loc_y * fw + loc_x) * (first[layer + 1] - first[layer]) \
        + (a - first[layer])
    # two boxes on one anchor: the loop leaves the later box's targets
    _, last = np.unique((b * obj.shape[1] + idx)[::-1], return_index=True)
    keep = len(b) - 1 - last
    b, m, a, idx = b[keep], m[keep], a[keep], idx[keep]
    x, y, w, h, fw, fh = x[keep], y[keep], w[keep], h[keep], fw[keep], fh[keep]
    center[b, idx, 0] = x / width * fw - loc_x[keep]
    center[b, idx, 1] = y / height * fh - loc_y[keep]
    scale[b, idx, 0] = _log_ratio(w, all_anchors[a, 0])
    scale[b, idx, 1] = _log_ratio(h, all_anchors[a, 1])
    weight[b, idx, :] = (2.0 - (w * h).astype(np.float64) / width / height)[:, None]
    obj[b, idx, 0] = mix[b, m, 0] if mix is not None else 1
    cls[b, idx] = 0
    cls[b, idx, ids[b, m, 0].astype(np.int64)] = 1


def _log_ratio(size, anchor):
    """``log(max(size, 1) / anchor)`` as GluonCV's loop computes it on float32 scalars:
    in float32 where ``size >= 1``, in float64 where ``max`` returns the int 1."""
    small = size < 1
    out = np.log(np.maximum(size, np.float32(1)) / anchor)
    if small.any():
        out[small] = np.log(1 / anchor[small].astype(np.float64))
    return out


def _numpy(x):
    """``x`` as a numpy array: NDArrays (GluonCV's transform) or numpy (the numpy one)."""
    return x.asnumpy() if isinstance(x, mx.nd.NDArray) else np.asarray(x)


def fast_targets(transform):
    """Give a GluonCV ``YOLO3DefaultTrainTransform`` the numpy target generator; returns it.

    The transform's image pipeline is unchanged; only ``_target_generator`` (the lazily
    built GluonCV generator) is replaced, and the five targets come out as numpy arrays
    (``train_batchify`` stacks them into NDArrays). A transform without a net is returned as is.
    """
    if getattr(transform, "_net_none", True):
        return transform
    transform._internal_target_generator = NumpyYOLOV3TargetGenerator(transform._num_classes,
                                                                      ndarray=False)
    return transform
