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


# ------------------------------------------------------------------ unreachable IoU ranges
def _tight_case(k):
    """A centred square box of a fifth to a twentieth of a square-ish image: its best IoU
    with a drawn crop is near the bound, so a bound too tight shows."""
    w, h = ((128, 128), (150, 128), (300, 310), (128, 140))[k % 4]
    side = (0.2, 0.1, 0.05, 0.25)[k // 2 % 4] * min(w, h)
    bbox = np.array([[w / 2 - side / 2, h / 2 - side / 2, w / 2 + side / 2, h / 2 + side / 2,
                      0, 0]], np.float32)
    return bbox, (w, h)


@pytest.mark.parametrize("seed", range(68))
def test_unreachable_range_has_no_fitting_crop(seed):
    """Checked by brute force, on random boxes and image sizes and on single boxes placed so
    that the bound is nearly tight: when ``_iou_upper_bound`` puts a minimum IoU out of reach,
    none of 20,000 crops drawn as the sampled crop draws them fits it, and an IoU those crops
    reach is never judged out of reach (a bound 0.7 times too small fails here)."""
    from datasets.detector.fast_crop import _draw_crops, _iou_upper_bound, _iou_with_crops
    rng = np.random.RandomState(seed)
    bbox, (w, h) = _case(rng) if seed < 60 else _tight_case(seed - 60)
    if len(bbox) == 0:
        return
    crops = _draw_crops(20000, w, h, 0.3, 1, 2, rng)
    best = _iou_with_crops(np.asarray(bbox), crops).min(axis=1).max()
    bound = _iou_upper_bound(np.asarray(bbox), w, h, 0.3, 1)
    for min_iou in (0.1, 0.3, 0.5, 0.7, 0.9):
        if min_iou > bound:
            assert best < min_iou, f"seed {seed}: IoU {best} reached, judged unreachable"
    assert bound >= 0.98 * best, f"seed {seed}: IoU {best} reached, bound {bound}"


def test_bound_rules_out_phantom_like_ranges_and_not_reachable_ones():
    from datasets.detector.fast_crop import _iou_upper_bound
    small, size = DIST_CASES[0]  # a 12x10 lesion in a 128x150 image: every range out of reach
    assert _iou_upper_bound(small, *size, 0.3, 1) < 0.1
    large, size = DIST_CASES[2]  # a 90x105 box: every range may be reached
    assert _iou_upper_bound(large, *size, 0.3, 1) >= 0.9
    degenerate = np.array([[5.0, 5.0, 5.0, 9.0, 0, 0]])  # zero area: nothing judged
    assert _iou_upper_bound(degenerate, *size, 0.3, 1) == np.inf
    assert _iou_upper_bound(small, 128, 150, 0.3, 1, 0.5) == np.inf  # outside the argument


@pytest.mark.parametrize("seed", range(200))
def test_skipping_unreachable_ranges_changes_nothing(seed, monkeypatch):
    """The sampled crop with and without the skip: the same crop, the same boxes and the
    generator left in the same state (the skip consumes the trials' draws)."""
    from datasets.detector import fast_crop as fc
    rng = np.random.RandomState(seed)
    bbox, size = _case(rng) if seed % 2 else DIST_CASES[seed // 2 % len(DIST_CASES)]
    outs = []
    for skip in (True, False):
        if not skip:
            monkeypatch.setattr(fc, "_iou_upper_bound", lambda *a: np.inf)
        gen = np.random.RandomState(1000 + seed)
        new, crop = sample_crop(bbox.copy(), size, rng=gen)
        outs.append((new, crop, gen.random_sample()))
    assert outs[0][1] == outs[1][1], f"seed {seed}"
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert outs[0][2] == outs[1][2], f"seed {seed}: generator left in another state"


# ------------------------------------------------------------------ the fused IoU test
@pytest.mark.parametrize("seed", range(120))
def test_fused_fit_test_is_the_reference_arithmetic(seed):
    """``_first_fits`` (crops and IoUs from columns) against ``_crops_from`` and
    ``_iou_with_crops`` (GluonCV's ``bbox_iou`` arithmetic): the same crops and IoUs bit for
    bit, so the same decisions, for every IoU range and a few random ones; float32 and
    float64 boxes, boxes outside the image, degenerate boxes, tiny images."""
    from datasets.detector.fast_crop import (DEFAULT_CONSTRAINTS, _crops_from, _first_fits,
                                             _iou_columns, _iou_with_crops)
    rng = np.random.RandomState(seed)
    if seed % 4 == 3:
        bbox, (w, h) = _tight_case(seed // 4)
    else:
        bbox, (w, h) = _case(rng)
        if seed % 5 == 0:
            w, h = int(rng.randint(2, 12)), int(rng.randint(2, 12))  # crops of 0 px happen
        if seed % 7 == 0 and len(bbox):
            bbox[0, 2] = bbox[0, 0]  # a box without area
    if len(bbox) == 0:
        return
    u = rng.random_sample((50, 4))
    scale = (0.3, 1.0) if seed % 3 else (0.5, 0.9)
    crops = _crops_from(u, w, h, *scale, 2)
    with np.errstate(invalid="ignore"):  # 0 / 0 for a crop of 0 px and a box without area
        iou = _iou_with_crops(bbox, crops)
        got = _iou_columns(bbox, *crops.T,
                           (crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1]))
    np.testing.assert_array_equal(got, iou)
    ranges = [(-np.inf if lo is None else lo, np.inf if hi is None else hi)
              for lo, hi in DEFAULT_CONSTRAINTS] + [tuple(sorted(rng.uniform(0, 1, 2)))]
    for lo, hi in ranges:
        with np.errstate(invalid="ignore"):
            fits, sides = _first_fits(u, bbox, w, h, *scale, 2, lo, hi)
        np.testing.assert_array_equal(np.stack(sides, axis=1), crops)
        np.testing.assert_array_equal(fits, (lo <= iou.min(axis=1)) & (iou.max(axis=1) <= hi),
                                      err_msg=f"range {lo}-{hi}")
