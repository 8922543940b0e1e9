"""Extra augmentations: boxes follow the pixels, references are OpenCV and plain loops."""
import cv2
import numpy as np
import pytest

from datasets.detector import augment
from datasets.detector.augment import ExtraAugment, rotate, rotate_boxes, rotation_matrix

SEED = 3


def grey_image(h=90, w=130, seed=SEED):
    rs = np.random.RandomState(seed)
    g = rs.randint(0, 256, (h, w, 1)).astype(np.uint8)
    return np.repeat(g, 3, axis=2)


def random_boxes(rs, n, w, h):
    x1 = rs.uniform(-5, w - 5, n)
    y1 = rs.uniform(-5, h - 5, n)
    x2 = x1 + rs.uniform(3, 40, n)
    y2 = y1 + rs.uniform(3, 40, n)
    cls = rs.randint(0, 2, n)
    return np.stack([x1, y1, x2, y2, cls], axis=1)


def test_rotation_by_zero_is_identity():
    img = grey_image()
    boxes = np.array([[10, 20, 40, 50, 0], [60, 5, 100, 30, 1]], dtype=np.float32)
    out, ob = rotate(img, boxes, 0.0)
    assert np.array_equal(out, img) and np.array_equal(ob, boxes)
    m = rotation_matrix(130, 90, 0.0)
    new, keep = rotate_boxes(boxes, m, 130, 90)
    np.testing.assert_allclose(new, boxes, atol=1e-9)
    assert keep.all()
    off = ExtraAugment(rotate_deg=0, noise_std=0, speckle_std=0, brightness=0, contrast=0,
                       sharpness=0, p=1.0)
    o2, l2 = off(img, boxes)
    assert np.array_equal(o2, img) and np.array_equal(l2, boxes)


@pytest.mark.parametrize("angle", [3.0, -5.0, 17.0, 90.0])
def test_rotate_boxes_matches_cv2_transform_loop(angle):
    rs = np.random.RandomState(SEED)
    w, h = 130, 90
    boxes = random_boxes(rs, 25, w, h)
    m = rotation_matrix(w, h, angle)
    new, keep = rotate_boxes(boxes, m, w, h, min_visible=0.5)
    for b, n, k in zip(boxes, new, keep):
        # corners in OpenCV's pixel-index coordinates: continuous minus half a pixel
        pts = np.array([[[b[0], b[1]]], [[b[2], b[1]]], [[b[0], b[3]]], [[b[2], b[3]]]]) - 0.5
        rot = cv2.transform(pts, m)[:, 0, :] + 0.5
        lo, hi = rot.min(axis=0), rot.max(axis=0)
        clo, chi = np.clip(lo, 0, [w, h]), np.clip(hi, 0, [w, h])
        visible = np.prod(chi - clo) / np.prod(hi - lo)
        np.testing.assert_allclose(n[:4], [clo[0], clo[1], chi[0], chi[1]], atol=1e-9)
        assert n[4] == b[4]
        assert k == (visible >= 0.5 and chi[0] - clo[0] >= 1 and chi[1] - clo[1] >= 1)


@pytest.mark.parametrize("angle,tol", [(5.0, 1.0), (-5.0, 1.0), (12.0, 1.0),
                                       # right angles move whole pixels: exact, which
                                       # checks the half-pixel convention
                                       (90.0, 1e-6), (-90.0, 1e-6), (180.0, 1e-6)])
def test_box_follows_rotated_pixels(angle, tol):
    w, h = 120, 80
    img = np.zeros((h, w, 3), np.uint8)
    img[20:40, 30:75] = 255  # pixels 30..74 -> continuous box [30, 20, 75, 40]
    out, boxes = rotate(img, np.array([[30.0, 20.0, 75.0, 40.0, 0.0]]), angle)
    ys, xs = np.nonzero(out[..., 0] > 127)
    seen = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert len(boxes) == 1
    np.testing.assert_allclose(boxes[0, :4], seen, atol=tol, err_msg=f"angle {angle}")


def test_boxes_stay_inside_and_mostly_out_boxes_drop():
    rs = np.random.RandomState(SEED)
    w, h = 100, 70
    img = grey_image(h, w)
    boxes = random_boxes(rs, 60, w, h)
    out, kept = rotate(img, boxes, 25.0, min_visible=0.5)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert 0 < len(kept) < len(boxes)  # corners of a 25 deg turn lose some boxes
    assert np.all(kept[:, 0] >= 0) and np.all(kept[:, 1] >= 0)
    assert np.all(kept[:, 2] <= w) and np.all(kept[:, 3] <= h)
    assert np.all(kept[:, 2] - kept[:, 0] >= 1) and np.all(kept[:, 3] - kept[:, 1] >= 1)


def test_rotation_skipped_when_every_box_would_drop():
    img = grey_image(60, 60)
    corner = np.array([[0.0, 0.0, 4.0, 4.0, 0.0]])  # leaves the image at 45 degrees
    assert len(rotate(img, corner, 45.0)[1]) == 0
    aug = ExtraAugment(rotate_deg=45, noise_std=0, speckle_std=0, brightness=0, contrast=0,
                       sharpness=0, p=1.0)
    skipped = 0
    for seed in range(10):
        np.random.seed(seed)
        out, label = aug(img, corner)
        assert len(label) == 1, f"seed {seed}: the sample lost its only box"
        if np.array_equal(label, corner):  # skipped: the image must not be rotated either
            assert np.array_equal(out, img), f"seed {seed}"
            skipped += 1
    assert skipped > 0


def test_intensity_augments_keep_shape_dtype_boxes_and_grey():
    img = grey_image()
    boxes = np.array([[10, 20, 40, 50, 0, 0], [60, 5, 100, 30, 0, 1]], dtype=np.float64)
    aug = ExtraAugment(rotate_deg=0, noise_std=0.05, speckle_std=0.2, brightness=0.2,
                       contrast=0.3, sharpness=0.8, p=1.0)
    np.random.seed(SEED)
    out, label = aug(img, boxes)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(label, boxes)
    assert not np.array_equal(out, img)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_intensity_functions_identity_and_direction():
    img = grey_image()
    assert np.array_equal(augment.adjust_brightness_contrast(img, 0.0, 1.0), img)
    assert np.array_equal(augment.adjust_sharpness(img, 1.0), img)
    low = augment.adjust_brightness_contrast(img, 0.0, 0.5)
    assert low.astype(float).std() < img.astype(float).std()
    brighter = augment.adjust_brightness_contrast(img, 20.0, 1.0)
    assert brighter.astype(float).mean() > img.astype(float).mean()
    blurred = augment.adjust_sharpness(img, 0.0)
    sharper = augment.adjust_sharpness(img, 2.0)
    grad = lambda a: np.abs(np.diff(a[..., 0].astype(float), axis=1)).mean()  # noqa: E731
    assert grad(blurred) < grad(img) < grad(sharper)


def test_same_seed_same_output():
    img = grey_image()
    boxes = np.array([[10, 20, 40, 50, 0], [60, 5, 100, 30, 0]], dtype=np.float64)
    aug = ExtraAugment(rotate_deg=10, p=0.5)
    runs = []
    for seed in (SEED, SEED, SEED + 1):
        np.random.seed(seed)
        runs.append([aug(img, boxes) for _ in range(4)])
    for (a, la), (b, lb) in zip(runs[0], runs[1]):
        assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert any(not np.array_equal(a, c) for (a, _), (c, _) in zip(runs[0], runs[2]))


def test_mxnet_image_in_mxnet_image_out():
    import mxnet as mx
    img = mx.nd.array(grey_image(), dtype="uint8")
    np.random.seed(SEED)
    out, _ = ExtraAugment(p=1.0)(img, np.array([[10.0, 20.0, 40.0, 50.0, 0.0]]))
    assert isinstance(out, mx.nd.NDArray) and out.dtype == np.uint8 and out.shape == img.shape


def test_bad_input_errors():
    with pytest.raises(ValueError, match="rotate_deg"):
        ExtraAugment(rotate_deg=-1)
    with pytest.raises(ValueError, match="p must be"):
        ExtraAugment(p=2)
    with pytest.raises(ValueError, match=r"\(N, >=4\)"):
        ExtraAugment()(grey_image(), np.zeros((3,)))
    with pytest.raises(TypeError, match="uint8"):
        ExtraAugment()(grey_image().astype(np.float32), np.zeros((0, 5)))
