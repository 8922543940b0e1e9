"""The fold ensemble fuses at its members' NMS IoU: one box where each member keeps one.

A member's NMS (``yolo_train.NMS_THRESH``) suppresses a second box overlapping the first by
more than that IoU; weighted box fusion at a looser IoU (ensemble_boxes' 0.55) kept both as
separate lesions when the members' boxes of one small lesion disagreed by 0.45-0.55 IoU: a
duplicate, a false positive the filter cannot remove (it sees a lesion).
"""
import inspect

import numpy as np

import train_yolo3
from eval import fusion
from eval.detection import box_iou
from models import yolo, yolo_train


def _iou(a, b):
    """IoU of two boxes in weighted box fusion's convention (continuous, no +1)."""
    return box_iou([a], [b], offset=0)[0, 0]


def _members(first, others, scores):
    """Five members, one box each: the first member's box and the rest's."""
    boxes = [np.array([first])] + [np.array([o]) for o in others]
    return boxes, [np.array([s]) for s in scores], [np.zeros(1, int)] * len(boxes)


def test_defaults_are_the_members_nms_iou():
    assert yolo_train.FUSION_IOU == yolo_train.NMS_THRESH
    assert train_yolo3.parse_args(["--data", "x"]).fusion_iou == yolo_train.NMS_THRESH
    assert yolo.model_json("n", ["lesion"], 128, ["m.params"])["fusion"]["iou"] == \
        yolo_train.NMS_THRESH
    default = inspect.signature(yolo_train.predict_models).parameters["fusion_iou"].default
    assert default == yolo_train.NMS_THRESH


def test_boxes_a_member_would_suppress_fuse_into_one():
    lesion = [100.0, 100.0, 120.0, 120.0]
    shifted = [106.5, 100.0, 126.5, 120.0]  # four members agree on a box shifted 6.5 px
    iou = _iou(lesion, shifted)
    assert yolo_train.NMS_THRESH < iou < 0.55  # one member's NMS would keep one of the two
    boxes, scores, labels = _members(lesion, [shifted] * 4, [0.9, 0.8, 0.8, 0.7, 0.6])
    b, s, _ = fusion.weighted_boxes_fusion(boxes, scores, labels, iou_thr=yolo_train.FUSION_IOU)
    assert len(b) == 1
    np.testing.assert_allclose(s, [np.mean([0.9, 0.8, 0.8, 0.7, 0.6])])
    # ensemble_boxes' default keeps the first member's box as a second lesion
    b, s, _ = fusion.weighted_boxes_fusion(boxes, scores, labels, iou_thr=0.55)
    assert len(b) == 2


def test_neighbouring_lesions_stay_apart():
    left = [100.0, 100.0, 120.0, 120.0]
    right = [112.0, 100.0, 132.0, 120.0]  # overlaps the left lesion at IoU 0.25
    assert _iou(left, right) < yolo_train.NMS_THRESH
    boxes = [np.array([left, right])] * 5
    scores = [np.array([0.9, 0.8])] * 5
    labels = [np.zeros(2, int)] * 5
    b, s, _ = fusion.weighted_boxes_fusion(boxes, scores, labels, iou_thr=yolo_train.FUSION_IOU)
    order = np.argsort(b[:, 0])
    np.testing.assert_allclose(b[order], [left, right])
    np.testing.assert_allclose(s[order], [0.9, 0.8])
