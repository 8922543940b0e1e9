"""datasets/detector/fast_crop.py against GluonCV's random_crop_with_constraints: the exact copy
gives the same crops, same boxes, and leaves the random generators in the same state, on random
boxes and image sizes; the sampled crop gives crops from the same distribution."""
import random

import numpy as np
import pytest
from gluoncv.data.transforms.experimental.bbox import random_crop_with_constraints as gluon_crop

from datasets.detector.fast_crop import random_crop_with_constraints as fast_crop
from datasets.detector.fast_crop import sample_crop_with_constraints as sample_crop


def _case(rng):
    w, h = int(rng.randint(40, 700)), int(rng.randint(40, 700))
    n = int(rng.choice([0, 1, 2, 3, 5, 12]))
    xy = rng.uniform(-10, [w, h], (n, 2))
    wh = rng.uniform(1, [w / 2, h / 2], (n, 2))
    bbox = np.c_[xy, xy + wh, rng.randint(0, 3, (n, 1)), rng.randint(0, 2, (n, 1))]
    return bbox.astype(rng.choice([np.float32, np.float64])), (w, h)


@pytest.mark.parametrize("seed", range(300))
def test_same_result_and_same_generator_state(seed):
    rng = np.random.RandomState(seed)
    bbox, size = _case(rng)
    outs = []
    for fn in (gluon_crop, fast_crop):
        random.seed(seed)
        np.random.seed(seed)
        out = fn(bbox.copy(), size)
        outs.append((out, random.random(), np.random.random_sample()))
    (b_g, c_g), *after_g = outs[0]
    (b_f, c_f), *after_f = outs[1]
    assert c_f == c_g, f"seed {seed}"
    np.testing.assert_array_equal(b_f, b_g, err_msg=f"seed {seed}")
    assert after_f == after_g, f"seed {seed}: generators left in another state"


def test_other_constraints_and_trials():
    rng = np.random.RandomState(5)
    for k in range(50):
        bbox, size = _case(rng)
        kw = dict(constraints=((0.5, 0.9), (None, 0.3)), max_trial=7, min_scale=0.5)
        random.seed(k)
        np.random.seed(k)
        want = gluon_crop(bbox.copy(), size, **kw)
        random.seed(k)
        np.random.seed(k)
        got = fast_crop(bbox.copy(), size, **kw)
        assert got[1] == want[1]
        np.testing.assert_array_equal(got[0], want[0])


# ------------------------------------------------------------------ the sampled crop
#: (boxes, image size): one small lesion (most IoU ranges unreachable, as on phantom halves at
#: 128 px), two medium boxes, one large box (most ranges reachable), and no box.
DIST_CASES = (
    (np.array([[60.0, 70.0, 72.0, 80.0, 0, 0]]), (128, 150)),
    (np.array([[10.0, 20.0, 60.0, 70.0, 0, 0], [70.0, 40.0, 120.0, 100.0, 0, 0]]), (140, 128)),
    (np.array([[20.0, 15.0, 110.0, 120.0, 0, 0]]), (128, 140)),
    (np.zeros((0, 6)), (128, 128)),
)


def _crop_stats(fn, bbox, size, n):
    """Per draw: crop area share, aspect ratio, whether it is the whole image, boxes kept and
    the smallest IoU of the kept boxes' source boxes with the crop (nan without boxes)."""
    from gluoncv.utils import bbox_iou
    out = []
    for _ in range(n):
        new, (x, y, w, h) = fn(bbox.copy(), size)
        iou = bbox_iou(bbox[:, :4], np.array([[x, y, x + w, y + h]], float)).min() \
            if len(bbox) else np.nan
        out.append((w * h / (size[0] * size[1]), w / h, (x, y, w, h) == (0, 0) + size,
                    len(new), iou))
    return np.array(out, float)


@pytest.mark.parametrize("case", range(len(DIST_CASES)))
def test_sampled_crop_has_gluoncvs_distribution(case):
    """The lazily sampled crop against GluonCV's (this module's exact copy of its draws, 5x
    faster, equal above): the same distribution of crop area, aspect ratio, min IoU with the
    boxes and boxes kept (two-sample Kolmogorov-Smirnov, p > 1e-3 at fixed seeds) and the
    same share of whole-image crops (within 4 standard errors). Mutations tried while writing
    it: visiting the slots in a fixed order, listing a slot without a fitting trial, or the
    whole image twice, each fail it (keeping the last fitting trial instead of the first
    passes, rightly: both are a trial drawn given that it fits)."""
    from scipy.stats import ks_2samp
    bbox, size = DIST_CASES[case]
    n = 2000
    random.seed(case)
    np.random.seed(case)
    want = _crop_stats(fast_crop, bbox, size, n)
    rng = np.random.RandomState(100 + case)
    got = _crop_stats(lambda b, s: sample_crop(b, s, rng=rng), bbox, size, n)
    for col, name in ((0, "area"), (1, "aspect"), (3, "kept"), (4, "min IoU")):
        if np.isnan(want[:, col]).all():
            assert np.isnan(got[:, col]).all()
            continue
        p = ks_2samp(want[:, col], got[:, col]).pvalue
        assert p > 1e-3, f"case {case}: {name} distributions differ (KS p={p:.2g})"
    p_w, p_g = want[:, 2].mean(), got[:, 2].mean()
    se = np.sqrt(max(p_w * (1 - p_w), 1.0 / n) * 2 / n)
    assert abs(p_w - p_g) <= 4 * se, f"case {case}: whole-image share {p_g} vs {p_w}"


@pytest.mark.parametrize("seed", range(100))
def test_sampled_crop_is_a_crop_gluoncv_could_return(seed):
    """Every sampled crop lies in the image, has GluonCV's scale and aspect bounds (or is the
    whole image), meets one of the IoU ranges with every box, and its boxes are GluonCV's
    bbox crop of it."""
    from gluoncv.data.transforms.bbox import crop as bbox_crop
    from gluoncv.utils import bbox_iou
    rng = np.random.RandomState(seed)
    bbox, (w, h) = _case(rng)
    new, (x, y, cw, ch) = sample_crop(bbox.copy(), (w, h), rng=rng)
    assert 0 <= x and 0 <= y and x + cw <= w and y + ch <= h and cw > 0 and ch > 0
    if (x, y, cw, ch) == (0, 0, w, h):
        return
    # scale in [0.3, 1) and aspect ratio in [1/2, 2], up to the integer truncation
    assert cw * ch >= int(0.3 * 0.3 * w * h * 0.5) - (w + h)
    if len(bbox) == 0:
        assert new is not None and len(new) == 0
        return
    np.testing.assert_array_equal(new, bbox_crop(bbox, (x, y, cw, ch),
                                                 allow_outside_center=False))
    iou = bbox_iou(bbox[:, :4], np.array([[x, y, x + cw, y + ch]], float))
    assert any(lo <= iou.min() and iou.max() <= hi for lo, hi in
               ((0.1, np.inf), (0.3, np.inf), (0.5, np.inf), (0.7, np.inf), (0.9, np.inf),
                (-np.inf, 1)))


def test_sampled_crop_uses_only_the_generator_it_is_given():
    bbox, size = DIST_CASES[1]
    py_state, np_state = random.getstate(), np.random.get_state()
    a = [sample_crop(bbox.copy(), size, rng=np.random.RandomState(7))[1] for _ in range(5)]
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert after[0] == np_state[0] and (after[1] == np_state[1]).all() and \
        after[2:] == np_state[2:]
    b = [sample_crop(bbox.copy(), size, rng=np.random.RandomState(7))[1] for _ in range(5)]
    assert a == b
