"""Features and distances against the libraries and obvious slow versions."""
import cv2
import numpy as np
import pytest
import scipy.fft
from scipy.spatial import distance as spd
from skimage import feature as skfeature

from datasets.filter import distances as dist
from datasets.filter import features
from datasets.filter import similar_fast


def speckle(h, w, seed):
    """Blurred Rayleigh speckle over a few bright and dark blobs and lines (uint8)."""
    rng = np.random.default_rng(seed)
    base = np.zeros((h, w), np.float32)
    for _ in range(max(3, h * w // 3000)):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(base, c, int(rng.integers(3, 12)), float(rng.uniform(-60, 80)), -1)
    y = int(rng.integers(0, h))
    cv2.line(base, (0, y), (w, y + int(rng.integers(-20, 20))), 90.0, 2)
    base = cv2.GaussianBlur(base, (0, 0), 2.0)
    sp = cv2.GaussianBlur(rng.rayleigh(1.0, (h, w)).astype(np.float32), (0, 0), 1.0)
    return np.clip(90 + base + 40 * (sp - sp.mean()), 0, 255).astype(np.uint8)


def notes_sobel(gray, ksize=3):
    """The notes' per-pixel Sobel loop (002, HOG section), minus its imread/imshow."""
    h, w = gray.shape
    pad = ksize // 2
    out = np.zeros((h + pad * 2, w + pad * 2), dtype=np.float32)
    out[pad:pad + h, pad:pad + w] = gray.copy()
    tmp = out.copy()
    out_v = out.copy()
    out_h = out.copy()
    kv = [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]
    kh = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
    for y in range(h):
        for x in range(w):
            out_v[pad + y, pad + x] = np.sum(kv * tmp[y:y + ksize, x:x + ksize])
            out_h[pad + y, pad + x] = np.sum(kh * tmp[y:y + ksize, x:x + ksize])
    out_v = np.clip(out_v, 0, 255)[pad:pad + h, pad:pad + w].astype(np.uint8)
    out_h = np.clip(out_h, 0, 255)[pad:pad + h, pad:pad + w].astype(np.uint8)
    return out_v, out_h


def test_sobel_matches_notes_loop():
    gray = speckle(14, 11, seed=1)
    gx, gy = features.sobel(gray)
    out_v, out_h = notes_sobel(gray)
    # the notes' kernels are top-minus-bottom and left-minus-right
    np.testing.assert_array_equal(np.clip(-gy, 0, 255).astype(np.uint8), out_v)
    np.testing.assert_array_equal(np.clip(-gx, 0, 255).astype(np.uint8), out_h)
    assert np.abs(gx).max() > 0 and np.abs(gy).max() > 0


@pytest.mark.parametrize("shape", [(16, 16), (37, 50), (64, 41)])
def test_hog_matches_skimage(shape):
    gray = speckle(*shape, seed=shape[0])
    want = skfeature.hog(gray, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
                         block_norm="L2-Hys", feature_vector=True)
    np.testing.assert_array_equal(features.hog(gray), want)
    # the numpy HOG used for templates: skimage sums cells in float32, hence the tolerance
    np.testing.assert_allclose(similar_fast.hog_single(gray), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", [3, 4])
def test_lbp_matches_skimage_except_exact_ties(seed):
    gray = speckle(60, 47, seed=seed)
    gray[40:52, 5:20] = 200          # flat patches: interpolated neighbours tie the centre
    gray[:6, 30:] = 0
    want = skfeature.local_binary_pattern(gray, 8, 2, method="uniform")
    codes = features.lbp(gray)
    ties = features.lbp_ties(gray)
    assert ties[42:50, 8:17].all() and ties.mean() < 0.2
    np.testing.assert_array_equal(codes[~ties], want[~ties])
    # at a tie the neighbour counts as >= the centre: a flat patch is all ones (code 8)
    assert (codes[42:50, 8:17] == 8).all()
    # a pure speckle image has (almost) no ties, so it is skimage's result throughout
    plain = speckle(40, 40, seed=seed + 10)
    assert features.lbp_ties(plain).mean() < 0.01


def test_lbp_histograms_match_loop():
    gray = speckle(24, 19, seed=3)
    codes = features.lbp(gray)
    valid = np.ones(gray.shape, bool)
    valid[5:12, 4:15] = False
    hist = features.lbp_histograms(gray, valid)
    nr, nc = 24 // 8, 19 // 8
    want = np.zeros((nr, nc, 10))
    for y in range(nr * 8):
        for x in range(nc * 8):
            if valid[y, x]:
                want[y // 8, x // 8, int(codes[y, x])] += 1
    np.testing.assert_array_equal(hist, want.ravel() / 64)


def test_canny_matches_cv2():
    gray = speckle(40, 30, seed=4)
    edges = features.canny(gray)
    np.testing.assert_array_equal(edges, cv2.Canny(gray, features.CANNY_LOW,
                                                   features.CANNY_HIGH) > 0)
    assert edges.any() and not edges.all()


@pytest.mark.parametrize("n_in", [32, 64, 45, 101])
def test_area_resize_matches_cv2_inter_area(n_in):
    gray = speckle(n_in, n_in + 7, seed=n_in).astype(np.float64)
    a_r = features.area_resize_matrix(n_in, 32)
    a_c = features.area_resize_matrix(n_in + 7, 32)
    want = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA)
    # OpenCV keeps its area weights in float32, even for float64 images
    np.testing.assert_allclose(a_r @ gray @ a_c.T, want, rtol=1e-6, atol=1e-4)


def test_phash_matches_loop_dct():
    gray = speckle(50, 77, seed=5)
    small = (features.area_resize_matrix(50, 32) @ gray.astype(np.float64)
             @ features.area_resize_matrix(77, 32).T)
    # 2-D DCT-II as rows then columns of 1-D scipy DCTs, one line at a time
    rows = np.stack([scipy.fft.dct(r, norm="ortho") for r in small])
    dct2 = np.stack([scipy.fft.dct(c, norm="ortho") for c in rows.T]).T
    top = dct2[:8, :8]
    np.testing.assert_allclose(features.phash_coefficients(gray), top, rtol=1e-12, atol=1e-9)
    bits = features.phash(gray)
    assert bits.shape == (64,) and bits.dtype == bool
    assert 0 < bits.sum() < 64
    assert np.abs(top - top.mean()).min() > 1e-6, "a coefficient sits on the mean"
    np.testing.assert_array_equal(bits, (top >= top.mean()).ravel())
    # with OpenCV's resize the bits agree too
    cv_small = cv2.resize(gray.astype(np.float64), (32, 32), interpolation=cv2.INTER_AREA)
    cv_top = cv2.dct(cv_small)[:8, :8]
    np.testing.assert_array_equal(bits, (cv_top >= cv_top.mean()).ravel())


def test_dct_matrix_matches_scipy():
    x = np.random.default_rng(6).normal(size=32)
    np.testing.assert_allclose(features.dct_matrix(32) @ x, scipy.fft.dct(x, norm="ortho"),
                               atol=1e-12)


def test_distances_match_scipy():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert dist.euclidean(a, b) == pytest.approx(spd.euclidean(a, b), rel=1e-12)
    assert dist.cosine(a, b) == pytest.approx(spd.cosine(a, b), rel=1e-12)
    assert dist.mse(a, b) == pytest.approx(spd.sqeuclidean(a, b) / a.size, rel=1e-12)
    u, v = rng.random(64) > 0.5, rng.random(64) > 0.6
    assert dist.jaccard(u, v) == pytest.approx(spd.jaccard(u, v), rel=1e-12)
    assert dist.hamming(u, v) == pytest.approx(spd.hamming(u, v) * u.size, rel=1e-12)


def test_distance_edge_cases():
    z = np.zeros(5)
    assert dist.cosine(z, z) == 0.0
    assert dist.cosine(z, np.ones(5)) == 1.0
    assert dist.jaccard(np.zeros(4, bool), np.zeros(4, bool)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        dist.mse(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="unknown distance 'l3'.*euclidean"):
        dist.get("l3")


@pytest.mark.parametrize("name", sorted(dist.DISTANCES))
def test_to_many_matches_pairwise(name):
    rng = np.random.default_rng(8)
    if name in ("jaccard", "hamming"):
        t, m = rng.random(40) > 0.5, rng.random((6, 40)) > 0.5
        m[0] = False
    else:
        t, m = rng.normal(size=40), rng.normal(size=(6, 40))
        m[0] = 0.0
    fn = dist.get(name)
    np.testing.assert_allclose(dist.to_many(name, t, m), [fn(t, r) for r in m], rtol=1e-12)
