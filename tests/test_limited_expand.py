"""datasets.detector.data.LimitedExpand caps GluonCV's random expand and restores it."""
import mxnet as mx
import numpy as np
import pytest

import gluoncv.data.transforms.presets.yolo as preset
from datasets.detector.data import LimitedExpand


class _Probe:
    """Stands in for the YOLO transform: calls random_expand the way GluonCV's does."""

    def __call__(self, img, label):
        return preset.timage.random_expand(img, fill=[0, 0, 0])


@pytest.mark.parametrize("ratio", [1.0, 1.5])
def test_expand_is_capped_and_restored(ratio):
    original = preset.timage.random_expand
    img = mx.nd.zeros((50, 40, 3), dtype="uint8")
    t = LimitedExpand(_Probe(), ratio)
    np.random.seed(0)
    for _ in range(30):
        out, (x, y, w, h) = t(img, None)
        assert out.shape[0] <= 50 * ratio + 1 and out.shape[1] <= 40 * ratio + 1
        assert (w, h) == (out.shape[1], out.shape[0])
    assert preset.timage.random_expand is original


def test_real_transform_with_expand_off_runs():
    from models import yolo
    from datasets.detector.data import train_transforms
    net = yolo.transform_net("yolo3_mobilenet0.25_custom", ["lesion"])
    (t,) = train_transforms(net, [64], max_expand=1.0)
    label = np.array([[10, 12, 30, 40, 0, 0]], dtype=np.float32)
    out = t(mx.nd.array(np.random.RandomState(0).randint(0, 255, (80, 60, 3)), dtype="uint8"),
            label)
    assert out[0].shape == (3, 64, 64)
    with pytest.raises(ValueError, match="max_expand"):
        LimitedExpand(t, 0.5)
