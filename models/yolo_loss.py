"""Focal loss on YOLOv3 objectness (notes 002 "Focal Loss").

``FL(p_t) = -alpha_t * (1 - p_t) ** gamma * log(p_t)`` replaces the sigmoid binary
cross-entropy of GluonCV's ``YOLOV3Loss`` objectness term; the centre, scale and class
terms, the ignore mask (objectness target -1) and the mixup weights (targets in (0, 1])
are GluonCV's, computed by the parent class itself.

``alpha`` weighs positives, as in the notes ("positives:negatives = 5:95 -> alpha 0.95"):
``alpha_t = alpha`` for a positive anchor, ``1 - alpha`` for a negative. ``alpha=0.5``
is "off up to a factor": with ``gamma=0`` it gives exactly half of GluonCV's objectness
loss. ``alpha=None`` means no class weight (``alpha_t = 1``): with ``gamma=0`` it *is*
GluonCV's objectness loss. ``gamma=0`` turns the focusing term off.

The notes also record why little is expected from it on YOLOv3: only the best anchor of
each ground truth is positive and anchors above the ignore IoU are ignored, which already
removes most easy background; so it is an option to evaluate, off by default.
"""
import logging
import math

from gluoncv.loss import YOLOV3Loss

log = logging.getLogger(__name__)


class FocalYOLOV3Loss(YOLOV3Loss):
    """``YOLOV3Loss`` whose objectness term is the focal loss.

    Parameters
    ----------
    alpha : float in [0, 1] or None
        Weight of positive anchors (negatives get ``1 - alpha``); None = no class weight.
    gamma : float >= 0
        Focusing exponent; 0 = plain (weighted) binary cross-entropy.
    batch_axis, weight, **kwargs
        As ``gluoncv.loss.YOLOV3Loss``.

    Notes
    -----
    Inputs and outputs are those of ``YOLOV3Loss.hybrid_forward``: objectness logits
    ``(B, N, 1)``, targets in {-1 (ignore), 0, (0, 1] (positive, mixup weight)}; returns
    ``(obj_loss, center_loss, scale_loss, cls_loss)``, each ``(B,)``, summed over anchors.
    """

    def __init__(self, alpha=0.5, gamma=2.0, batch_axis=0, weight=None, **kwargs):
        if alpha is not None and not (0.0 <= float(alpha) <= 1.0):
            raise ValueError(f"focal alpha must be in [0, 1] or None, got {alpha!r}")
        if not (math.isfinite(float(gamma)) and float(gamma) >= 0):
            raise ValueError(f"focal gamma must be a finite number >= 0, got {gamma!r}")
        super().__init__(batch_axis=batch_axis, weight=weight, **kwargs)
        self._alpha = None if alpha is None else float(alpha)
        self._gamma = float(gamma)

    @property
    def alpha(self):
        return self._alpha

    @property
    def gamma(self):
        return self._gamma

    def hybrid_forward(self, F, objness, box_centers, box_scales, cls_preds,
                       objness_t, center_t, scale_t, weight_t, class_t, class_mask):
        # The parent computes the other three terms exactly as GluonCV does; its BCE
        # objectness is discarded (one cheap (B, N, 1) op, and no copied code to drift).
        _, center_loss, scale_loss, cls_loss = super().hybrid_forward(
            F, objness, box_centers, box_scales, cls_preds,
            objness_t, center_t, scale_t, weight_t, class_t, class_mask)
        denorm = F.cast(
            F.shape_array(objness_t).slice_axis(axis=0, begin=1, end=None).prod(), 'float32')
        # Same mask as YOLOV3Loss: mixup weight for positives, 1 for negatives, 0 ignored.
        mask = F.where(objness_t > 0, objness_t, objness_t >= 0)
        y = objness_t > 0
        # With z = x * (1 - 2y): 1 - p_t = sigmoid(z) and -log(p_t) = softplus(z).
        # softplus(z) = relu(z) + softplus(-|z|) and (1-p_t)^g = exp(-g * softplus(-z)) stay
        # finite, with finite gradients, for any logit (sigmoid(z)**g has an infinite
        # gradient at 0 when g < 1, and 0 * inf = nan would survive the ignore mask).
        z = objness * (1 - 2 * y)
        nll = F.relu(z) + F.Activation(-F.abs(z), act_type='softrelu')
        loss = nll
        if self._gamma != 0:
            neg_z = -z
            log_1m_pt = -(F.relu(neg_z) + F.Activation(-F.abs(neg_z), act_type='softrelu'))
            loss = loss * F.exp(self._gamma * log_1m_pt)
        if self._alpha is not None:
            loss = loss * (self._alpha * y + (1 - self._alpha) * (1 - y))
        # Mean over non-batch axes times N = sum over anchors, as gluon's loss + denorm.
        obj_loss = F.broadcast_mul(F.mean(loss * mask, axis=self._batch_axis, exclude=True),
                                   denorm)
        return obj_loss, center_loss, scale_loss, cls_loss


def use_focal_objectness(net, alpha=0.5, gamma=2.0):
    """Swap a GluonCV YOLOV3 network's loss for ``FocalYOLOV3Loss``.

    Parameters
    ----------
    net : gluoncv.model_zoo.yolo.yolo3.YOLOV3
        Network whose training forward returns its ``_loss`` output.
    alpha, gamma : see ``FocalYOLOV3Loss``.

    Returns
    -------
    FocalYOLOV3Loss
        The new loss block (now ``net._loss``).

    Notes
    -----
    Assigning a child block to a HybridBlock clears its cached graph, so a hybridized net
    retraces with the new loss at its next call. The loss has no parameters: nothing to
    initialise or load.
    """
    current = getattr(net, "_loss", None)
    if not isinstance(current, YOLOV3Loss):
        raise TypeError(f"expected a GluonCV YOLOV3 network with a YOLOV3Loss in ._loss, got "
                        f"{type(net).__name__} with _loss={type(current).__name__}")
    loss = FocalYOLOV3Loss(alpha=alpha, gamma=gamma)
    net._loss = loss
    net._clear_cached_op()  # HybridBlock.__setattr__ does it too; explicit for older mxnet
    log.info("YOLOv3 objectness loss: focal (alpha=%s, gamma=%s)", alpha, gamma)
    return loss
