"""The YOLOv3 training step, epoch and prediction shared by train_yolo3.py, find_lr.py and
bench/bench_train_loop.py.

The step follows GluonCV's ``scripts/detection/yolo/train_yolo3.py``: targets come from the
loader (``YOLO3DefaultTrainTransform``), the net returns its four losses under
``autograd.record``, one backward over the per-device sums, one ``trainer.step``. What
differs: ``trainer.step`` counts the images of every distributed worker (MXNET_TRAPS 32),
the net is re-hybridised only when it switches between training and inference (TRAPS 14),
and a non-finite loss stops the run with the iteration and each loss part. The trainer
comes from ``models.optim``.
"""
import hashlib
import logging
import random
import time

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon

log = logging.getLogger(__name__)

LOSS_NAMES = ("loss_obj", "loss_center", "loss_scale", "loss_cls")
NMS_THRESH = 0.45
NMS_TOPK = 400
#: IoU at which the fold ensemble fuses boxes (weighted box fusion): the members' own NMS IoU,
#: so boxes any one member would suppress as one lesion are one lesion for the ensemble too.
#: ensemble_boxes' 0.55 left a second, fused box on 4-20 test lesions per demo run (a
#: duplicate, a false positive at both stages: 13 runs, docs/EXPERIMENTS.md), against 0-3 of
#: ~900 in the members' out-of-fold detections the operating threshold is chosen on.
FUSION_IOU = NMS_THRESH


def seed_all(seed):
    """Seed Python's ``random``, numpy and MXNet (``--seed``)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    mx.random.seed(seed)


def set_mode(net, mode, post_nms=100, fixed_shape=False):
    """Hybridise ``net`` for ``mode`` ('train' or 'predict') if it is not already.

    The cached graph bakes in the number of inputs (7 in training, 1 in inference) and the
    ``autograd.is_training()`` branch, so each switch needs a fresh trace (MXNET_TRAPS 14);
    staying in one mode keeps the trace.

    ``fixed_shape``: every training batch has one shape (no random input shapes; the loader
    rolls the last partial batch over), so the training graph is planned once, with its
    memory, instead of at every call (``static_alloc``, ``static_shape``): the same
    arithmetic and trained weights, 4-9 % more images/s in the bare step on a 2-core CPU
    (README, "Detector on a CPU", rows G0/G1). A batch whose padded box count differs
    re-plans the graph for it. Prediction keeps the dynamic graph (a split's last batch is
    smaller)."""
    if mode not in ("train", "predict"):
        raise ValueError(f"mode must be 'train' or 'predict', got {mode!r}")
    static = bool(fixed_shape) and mode == "train"
    key = (mode, post_nms if mode == "predict" else static)
    if getattr(net, "_yolo_mode", None) == key:
        return
    if mode == "predict":
        net.set_nms(nms_thresh=NMS_THRESH, nms_topk=NMS_TOPK, post_nms=post_nms)
    mx.nd.waitall()
    net.hybridize(static_alloc=static, static_shape=static)  # clears the cached graph
    net._yolo_mode = key


class KVInfo:
    """Rank and worker count of this process (1 worker, rank 0 without a dist kvstore)."""

    def __init__(self, kvstore=None):
        self.kv = kvstore
        self.rank = kvstore.rank if kvstore is not None else 0
        self.num_workers = kvstore.num_workers if kvstore is not None else 1

    @property
    def distributed(self):
        return self.kv is not None


def create_kvstore(kind):
    """A dist kvstore object for ``dist_*`` kinds (created once per process), else None.

    Local kinds ('device', 'local', 'nccl') stay strings that ``gluon.Trainer`` resolves.
    """
    if kind.startswith("dist"):
        return mx.kv.create(kind)
    return None


def train_step(net, trainer, batch, ctx, num_workers=1, amp=False):
    """One optimisation step on a loader batch; returns the summed losses per part.

    Parameters
    ----------
    batch : list of NDArray
        ``(img, obj_t, center_t, scale_t, weight_t, class_t, gt_boxes)`` from
        ``datasets.detector.data.train_loader``.
    ctx : list of mx.Context
        Data-parallel devices; the batch is split over them.
    num_workers : int
        Distributed workers: the servers sum their gradients, so the step normalises by the
        global batch (MXNET_TRAPS 32).

    Returns
    -------
    np.ndarray
        float64 ``(4,)``: objectness, center, scale and class losses summed over the batch.
    """
    batch_size = batch[0].shape[0]
    data = gluon.utils.split_and_load(batch[0], ctx_list=ctx, batch_axis=0)
    targets = [gluon.utils.split_and_load(batch[i], ctx_list=ctx, batch_axis=0)
               for i in range(1, 6)]
    gt_boxes = gluon.utils.split_and_load(batch[6], ctx_list=ctx, batch_axis=0)
    parts, sums = [], []
    with autograd.record():
        for i, x in enumerate(data):
            losses = net(x, gt_boxes[i], *[t[i] for t in targets])
            parts.append(losses)
            sums.append(losses[0] + losses[1] + losses[2] + losses[3])
        if amp:
            from mxnet.contrib import amp as mx_amp
            with mx_amp.scale_loss(sums, trainer) as scaled:
                autograd.backward(scaled)
        else:
            autograd.backward(sums)
    trainer.step(batch_size * num_workers)
    # One device->host copy per step (it also paces the loop, as GluonCV's metric update does).
    per_part = [mx.nd.add_n(*[p[k].sum().as_in_context(mx.cpu()) for p in parts])
                for k in range(4)]
    return mx.nd.concat(*[v.reshape((1,)) for v in per_part], dim=0).asnumpy().astype(np.float64)


def train_epoch(net, trainer, loader, ctx, epoch=0, num_workers=1, amp=False, progress=True,
                desc="train", ema=None, fixed_shape=False):
    """Train one pass over ``loader``; ``ema`` (``models.ema.ModelEMA``) is updated after
    every step; ``fixed_shape``: every batch has one shape (:func:`set_mode`).

    Returns
    -------
    dict
        ``loss_obj, loss_center, loss_scale, loss_cls`` (mean per image), ``lr`` (at the
        epoch's end), ``images_per_s`` (this process), ``iters``.

    Raises
    ------
    FloatingPointError
        A loss is not finite (names the epoch, iteration and each part).
    """
    from tqdm import tqdm

    set_mode(net, "train", fixed_shape=fixed_shape)
    totals = np.zeros(4)
    images, iters = 0, 0
    t0 = time.time()
    # progress None: bars only on a terminal (tqdm's disable=None)
    bar = tqdm(loader, desc=f"{desc} epoch {epoch}", leave=False,
               disable=None if progress is None else not progress, dynamic_ncols=True)
    for batch in bar:
        losses = train_step(net, trainer, batch, ctx, num_workers, amp)
        if ema is not None:
            ema.update()
        if not np.all(np.isfinite(losses)):
            parts = ", ".join(f"{n}={v:.4g}" for n, v in zip(LOSS_NAMES, losses))
            raise FloatingPointError(
                f"non-finite loss at epoch {epoch}, iteration {iters}: {parts}; lr="
                f"{trainer.learning_rate:.3g}. Lower --lr or add --warmup-epochs "
                f"(MXNET_TRAPS 19)")
        totals += losses
        images += batch[0].shape[0]
        iters += 1
        if progress is not False:
            bar.set_postfix({n[5:]: f"{v / images:.3f}" for n, v in zip(LOSS_NAMES, totals)})
    mx.nd.waitall()
    elapsed = max(time.time() - t0, 1e-9)
    row = {n: float(v / max(images, 1)) for n, v in zip(LOSS_NAMES, totals)}
    row.update(lr=float(trainer.learning_rate), images_per_s=images / elapsed, iters=iters)
    return row


def predict(net, loader, ctx, score_thresh=0.01, top_k=100):
    """Detections for every image of a validation loader, in original image pixels.

    Parameters
    ----------
    loader : DataLoader
        ``datasets.detector.data.val_loader``: ``(img, label, orig_wh)`` batches, in order.
    score_thresh : float
        Keep boxes scoring at least this (low, so the filter stage sees negatives).
    top_k : int
        At most this many boxes per image after NMS.

    Returns
    -------
    list of dict
        One per image, in loader order: ``boxes`` ``(K, 4)`` float64 ``x1, y1, x2, y2`` in
        the original image's pixels (clipped to it), ``scores`` ``(K,)``, ``labels``
        ``(K,)`` int, sorted by descending score.
    """
    set_mode(net, "predict", post_nms=top_k)
    out = []
    for batch in loader:
        n = batch[0].shape[0]
        devices = ctx[:n] if n < len(ctx) else ctx
        data = gluon.utils.split_and_load(batch[0], ctx_list=devices, batch_axis=0,
                                          even_split=False)
        ids, scores, boxes = [], [], []
        for x in data:
            i, s, b = net(x)
            ids.append(i.asnumpy())
            scores.append(s.asnumpy())
            boxes.append(b.asnumpy())
        ids = np.concatenate(ids)[..., 0]
        scores = np.concatenate(scores)[..., 0]
        boxes = np.concatenate(boxes).astype(np.float64)
        in_h, in_w = batch[0].shape[2], batch[0].shape[3]
        sizes = batch[2].asnumpy()
        for k in range(n):
            w, h = float(sizes[k][0]), float(sizes[k][1])
            keep = (ids[k] >= 0) & (scores[k] >= score_thresh)
            b = boxes[k][keep] * np.array([w / in_w, h / in_h, w / in_w, h / in_h])
            b[:, (0, 2)] = b[:, (0, 2)].clip(0, w)
            b[:, (1, 3)] = b[:, (1, 3)].clip(0, h)
            order = np.argsort(-scores[k][keep], kind="stable")
            out.append({"boxes": b[order], "scores": scores[k][keep][order].astype(np.float64),
                        "labels": ids[k][keep][order].astype(int)})
    return out


def predict_models(nets, loader, ctx, score_thresh=0.01, top_k=100, fusion_iou=FUSION_IOU):
    """:func:`predict` of one net, or of several fused by weighted box fusion.

    The ensemble's fused scores are the members' mean score times the share of members that
    found the box (``eval.fusion``); boxes below ``score_thresh`` after fusion and past
    ``top_k`` per image are dropped, as for one net.
    """
    per_model = [predict(net, loader, ctx, score_thresh, top_k) for net in nets]
    if len(per_model) == 1:
        return per_model[0]
    from eval.fusion import weighted_boxes_fusion
    out = []
    for parts in zip(*per_model):
        b, s, lab = weighted_boxes_fusion([d["boxes"] for d in parts],
                                          [d["scores"] for d in parts],
                                          [d["labels"] for d in parts], iou_thr=fusion_iou)
        keep = np.flatnonzero(s >= score_thresh)[:top_k]
        out.append({"boxes": b[keep], "scores": s[keep], "labels": lab[keep].astype(int)})
    return out


def loss_step_fn(net, trainer, batches, ctx):
    """``step_fn(lr) -> loss`` for ``models.lr_range.lr_range_test``: one ``train_step`` at
    ``lr`` on the next batch of the endless iterator ``batches``; the loss is the sum of the
    four parts per image. ``trainer`` must have no scheduler (the LR is set here)."""
    def step(lr):
        trainer.set_learning_rate(lr)
        batch = next(batches)
        return float(train_step(net, trainer, batch, ctx).sum() / batch[0].shape[0])
    set_mode(net, "train")
    return step


def endless(loader):
    """Cycle a loader forever (a fresh pass each time, so shapes and order keep varying)."""
    while True:
        for batch in loader:
            yield batch


def param_digest(net, trainable_only=True):
    """SHA-1 of the parameter bytes (sorted by structural name).

    ``trainable_only`` skips BatchNorm running statistics, which a dist kvstore does not
    synchronise (each worker keeps its own), so two workers agree only on the rest.
    """
    h = hashlib.sha1()
    params = net._collect_params_with_prefix()
    for name in sorted(params):
        p = params[name]
        if trainable_only and p.grad_req == "null":
            continue
        h.update(name.encode())
        h.update(np.ascontiguousarray(p.data(p.list_ctx()[0]).asnumpy()).tobytes())
    return h.hexdigest()
