"""Similar-region search: geometry, known shifts, fast path vs the per-window loop, errors."""
import cv2
import numpy as np
import pytest
from skimage import feature as skfeature

from datasets.filter import features, similar
from datasets.filter import similar_fast


def anatomy(h, w, seed):
    """Smooth 'tissue' of bright and dark spots (float32, zero mean-ish)."""
    rng = np.random.default_rng(seed)
    base = np.zeros((h, w), np.float32)
    for _ in range(h * w // 400):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(base, c, int(rng.integers(2, 7)), float(rng.choice([-80, 100])), -1)
    return cv2.GaussianBlur(base, (0, 0), 1.0)


def render(base, rng, shift=(0, 0), noise=10.0):
    """B-mode-like half: `base` translated by shift=(dx, dy), fresh blurred Rayleigh speckle."""
    dx, dy = shift
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    b = cv2.warpAffine(base, m, base.shape[::-1], borderMode=cv2.BORDER_REFLECT)
    sp = cv2.GaussianBlur(rng.rayleigh(1.0, b.shape).astype(np.float32), (0, 0), 1.0)
    return np.clip(100 + b + noise * (sp - sp.mean()), 0, 255).astype(np.uint8)


def speckle_pair(seed, shape=(90, 84), shape_ref=None, noise=30.0):
    rng = np.random.default_rng(seed)
    base = anatomy(*shape, seed)
    les = render(base, rng, noise=noise)
    ref = render(base, rng, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), noise=noise)
    if shape_ref is not None:
        ref = ref[:shape_ref[0], :shape_ref[1]]
    return les, ref


# ---------------------------------------------------------------- geometry

def test_ring_mask_geometry():
    m = similar.ring_mask(20, 30, (5, 4, 25, 12))
    assert m.shape == (20, 30) and m.dtype == np.uint8
    assert (m[4:12, 5:25] == 0).all()
    assert m.sum() == 20 * 30 - 8 * 20
    outside = np.ones((20, 30), bool)
    outside[4:12, 5:25] = False
    assert (m[outside] == 1).all()
    # applying it blacks out exactly the box
    win = np.full((20, 30), 7, np.uint8)
    masked = similar.apply_mask(win, m)
    assert (masked[4:12, 5:25] == 0).all() and (masked[outside] == 7).all()


def test_grow_box_margins_clip_and_min_size():
    assert similar.grow_box((40, 50, 60, 90), 0.5, (200, 200)) == (30, 30, 70, 110)
    # clipped at the image border: the ring is thinner on that side
    assert similar.grow_box((2, 3, 22, 43), 0.5, (200, 100)) == (0, 0, 32, 63)
    assert similar.grow_box((80, 180, 100, 200), 0.5, (200, 100)) == (70, 170, 100, 200)
    # tiny box, no context: grown to MIN_TEMPLATE_PX around its centre
    x1, y1, x2, y2 = similar.grow_box((50, 50, 54, 54), 0.0, (200, 200))
    assert (x2 - x1, y2 - y1) == (similar.MIN_TEMPLATE_PX,) * 2
    assert x1 <= 50 and x2 >= 54
    with pytest.raises(ValueError, match="context"):
        similar.grow_box((0, 0, 10, 10), -0.1, (50, 50))
    # numpy scalars (as read back from arrays or JSON via numpy) are numbers too
    assert similar.grow_box((40, 50, 60, 90), np.float32(0.5), (200, 200)) == (30, 30, 70, 110)


def test_pixel_box_rounds_outwards_and_rejects_bad_boxes():
    assert similar.pixel_box((10.2, 5.9, 20.1, 15.0), (100, 100)) == (10, 5, 21, 15)
    assert similar.pixel_box((-5, 90, 10, 130), (100, 100)) == (0, 90, 10, 100)
    x1, y1, x2, y2 = similar.pixel_box((30.2, 30.2, 30.4, 30.4), (100, 100))
    assert (x2 - x1, y2 - y1) == (similar.MIN_BOX_PX,) * 2
    for bad, msg in [((120, 10, 130, 20), "outside"), ((10, 10, 5, 20), "x1 < x2"),
                     ((np.nan, 0, 5, 5), "finite"), ((1, 2, 3), "x1, y1, x2, y2")]:
        with pytest.raises(ValueError, match=msg):
            similar.pixel_box(bad, (100, 100))


# ---------------------------------------------------------------- search behaviour

@pytest.mark.parametrize("feature", features.FEATURES)
def test_identical_reference_gives_zero_offset(feature):
    les, _ = speckle_pair(1)
    m = similar.find_similar(les, les.copy(), (30.5, 28.0, 55.0, 52.3), search_radius=8,
                             feature=feature)
    assert (m.dx, m.dy) == (0, 0)
    assert m.distance == pytest.approx(0.0, abs=1e-6)
    assert m.box == m.query_box == (30, 28, 55, 53)


@pytest.mark.parametrize("feature", features.FEATURES)
@pytest.mark.parametrize("seed", [11, 12])
def test_known_shift_is_recovered(feature, seed):
    rng = np.random.default_rng(seed)
    base = anatomy(120, 110, seed)
    shift = (int(rng.integers(-3, 4)) * 4, int(rng.integers(-3, 4)) * 4)
    les = render(base, rng)
    ref = render(base, rng, shift)
    m = similar.find_similar(les, ref, (38.5, 43.2, 72.0, 75.9), search_radius=12, stride=4,
                             feature=feature)
    assert (m.dx, m.dy) == shift, f"seed {seed}"
    qx1, qy1, qx2, qy2 = m.query_box
    assert m.box == (qx1 + shift[0], qy1 + shift[1], qx2 + shift[0], qy2 + shift[1])


CASES = [  # (seed, box, context, radius, stride, reference shape or None)
    (0, (30.0, 30.0, 50.0, 52.0), 0.5, 12, 4, None),
    (1, (2.5, 3.0, 24.0, 20.0), 0.5, 8, 4, None),          # top-left corner: clipped ring
    (2, (60.0, 70.0, 83.9, 89.9), 0.8, 12, 3, (89, 83)),   # bottom-right, smaller reference
    (3, (40.0, 20.0, 43.0, 22.0), 0.5, 10, 5, None),       # tiny box
    (4, (10.0, 35.0, 75.0, 60.0), 0.3, 6, 2, (90, 82)),    # wide box, dense stride
    (5, (3.0, 2.0, 80.0, 88.0), 0.5, 8, 4, None),          # ring clipped on every side
    (6, (30.0, 30.0, 50.0, 52.0), 0.5, 3, 4, None),        # radius < stride: one window
    (7, (20.0, 25.0, 44.0, 49.0), 0.5, 16, 8, (88, 80)),   # stride = HOG cell
]


@pytest.mark.parametrize("feature", features.FEATURES)
@pytest.mark.parametrize("case", CASES, ids=[f"case{c[0]}" for c in CASES])
def test_fast_search_equals_window_loop(feature, case):
    seed, box, context, radius, stride, ref_shape = case
    les, ref = speckle_pair(seed, shape_ref=ref_shape)
    slow, offsets, d_slow = similar.find_similar_loop(les, ref, box, context, radius, stride,
                                                      feature, return_all=True)
    fast, offsets_f, d_fast = similar._search_fast(les, ref, box, context, radius, stride,
                                                   feature, None)
    np.testing.assert_array_equal(offsets, offsets_f)
    assert len(offsets) >= 1
    # HOG: skimage sums cells in float32; every other feature is exact
    np.testing.assert_allclose(d_fast, d_slow, rtol=1e-6, atol=1e-6,
                               err_msg=f"seed {seed} feature {feature}")
    assert (fast.box, fast.dx, fast.dy, fast.query_box) == \
        (slow.box, slow.dx, slow.dy, slow.query_box), f"seed {seed} feature {feature}"
    assert fast.distance == pytest.approx(slow.distance, rel=1e-6, abs=1e-6)
    assert fast == similar.find_similar(les, ref, box, context, radius, stride, feature)
    rh, rw = ref.shape
    x1, y1, x2, y2 = fast.box
    assert 0 <= x1 < x2 <= rw and 0 <= y1 < y2 <= rh


def test_hog_windows_match_skimage_per_window():
    les, ref = speckle_pair(7)
    mask = similar.ring_mask(41, 35, (0, 9, 20, 30))  # box touching the window's left edge
    wys, wxs = np.arange(0, 25, 4), np.arange(0, 21, 4)
    feats = similar_fast.hog_windows(ref.astype(np.float64), mask, wys, wxs)
    k = 0
    for y in wys:
        for x in wxs:
            win = similar.apply_mask(ref[y:y + 41, x:x + 35], mask)
            want = skfeature.hog(win, orientations=9, pixels_per_cell=(8, 8),
                                 cells_per_block=(2, 2), block_norm="L2-Hys")
            np.testing.assert_allclose(feats[k], want, rtol=0, atol=1e-6, err_msg=f"{y},{x}")
            k += 1


@pytest.mark.parametrize("h, w, inner, step", [
    (64, 64, (16, 16, 48, 48), 4),   # sizes multiple of 8: bottom/right frame cells exist
    (64, 56, (0, 0, 64, 20), 4),     # box across the whole width at the top
    (41, 48, (20, 10, 48, 41), 3),   # box in the bottom-right corner, odd stride
    (101, 99, (25, 25, 75, 74), 8),  # not multiples of 8, stride = cell
])
def test_hog_terms_match_full_features(h, w, inner, step):
    _, ref = speckle_pair(9, shape=(150, 140))
    mask = similar.ring_mask(h, w, inner)
    wys, wxs = np.arange(0, 5 * step, step), np.arange(0, 4 * step, step)
    region = ref[:h + wys[-1], :w + wxs[-1]].astype(np.float64)
    feats = similar_fast.hog_windows(region, mask, wys, wxs)
    template = similar_fast.hog_single(similar.apply_mask(ref[7:7 + h, 5:5 + w], mask))
    tw, ww = similar_fast.hog_terms(region, mask, wys, wxs, template)
    np.testing.assert_allclose(tw, feats @ template, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ww, np.einsum("ij,ij->i", feats, feats), rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="needs a region"):
        similar_fast.hog_terms(region[:-1], mask, wys, wxs, template)


def test_ties_prefer_smallest_offset_then_row_major():
    offsets = np.array([[-4, -4], [-4, 0], [0, -4], [0, 4], [4, 0], [4, 4]])
    assert similar.pick_best([1, 0.5, 0.5, 0.5, 0.5, 0.2], offsets) == 5
    assert similar.pick_best([1, 0.5, 0.5, 0.5, 0.5, 0.7], offsets) == 1
    assert similar.pick_best([0.5, 0.6, 0.5, 0.5, 0.5, 0.7], offsets) == 2
    # flat images: every window ties, the query position wins
    flat = np.full((60, 60), 90, np.uint8)
    for feature in features.FEATURES:
        m = similar.find_similar(flat, flat, (20, 20, 35, 35), search_radius=8, feature=feature)
        assert (m.dx, m.dy) == (0, 0), feature


# ---------------------------------------------------------------- errors

def test_bad_feature_distance_pairs_are_refused():
    les, ref = speckle_pair(0)
    with pytest.raises(ValueError, match=r"'hamming'.*'hog'.*valid pairs: hog->euclidean"):
        similar.find_similar(les, ref, (10, 10, 30, 30), feature="hog", distance="hamming")
    with pytest.raises(ValueError, match=r"'mse'.*'phash'.*phash->hamming"):
        similar.find_similar(les, ref, (10, 10, 30, 30), feature="phash", distance="mse")
    with pytest.raises(ValueError, match="unknown feature 'sift'"):
        similar.find_similar(les, ref, (10, 10, 30, 30), feature="sift")
    for feature, default in similar.DEFAULT_DISTANCE.items():
        assert similar.check_pair(feature) == default


def test_bad_inputs_are_refused():
    les, ref = speckle_pair(0)
    with pytest.raises(ValueError, match="outside the image"):
        similar.find_similar(les, ref, (200, 10, 230, 30))
    with pytest.raises(ValueError, match="reference_gray: want a 2-D uint8"):
        similar.find_similar(les, ref.astype(np.float32), (10, 10, 30, 30))
    with pytest.raises(ValueError, match="lesion_gray: want a 2-D uint8"):
        similar.find_similar(np.dstack([les] * 3), ref, (10, 10, 30, 30))
    with pytest.raises(ValueError, match="stride"):
        similar.find_similar(les, ref, (10, 10, 30, 30), stride=0)
    with pytest.raises(ValueError, match="no ring"):
        similar.find_similar(les, ref, (0, 0, 84, 90), context=0.0)
    with pytest.raises(ValueError, match="search_radius"):
        similar.find_similar(les, ref, (10, 10, 30, 30), search_radius=-1)
