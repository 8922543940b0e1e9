"""Focal objectness vs GluonCV's YOLOV3Loss and vs a numpy focal loss written here."""
import mxnet as mx
import numpy as np
import pytest
from gluoncv.loss import YOLOV3Loss

from models.yolo_loss import FocalYOLOV3Loss, use_focal_objectness

SEED = 7


def random_inputs(seed=SEED, batch=3, n=40, classes=2, scale=3.0):
    """YOLOV3Loss inputs: logits (B, N, 1) etc.; targets -1 ignore, 0 neg, 1 pos, 0.6 mixup."""
    rs = np.random.RandomState(seed)
    nd = lambda a: mx.nd.array(a, dtype="float32")  # noqa: E731
    obj_t = rs.choice([-1.0, 0.0, 0.0, 0.0, 1.0, 0.6], size=(batch, n, 1))
    return [nd(rs.randn(batch, n, 1) * scale), nd(rs.randn(batch, n, 2)), nd(rs.randn(batch, n, 2)),
            nd(rs.randn(batch, n, classes)), nd(obj_t), nd(rs.rand(batch, n, 2)),
            nd(rs.randn(batch, n, 2)), nd(rs.rand(batch, n, 2)),
            nd(rs.randint(0, 2, (batch, n, classes))), nd(rs.randint(0, 2, (batch, n, classes)))]


def focal_numpy(logits, obj_t, alpha, gamma):
    """-alpha_t (1 - p_t)^gamma log(p_t), masked like YOLOV3Loss, summed over anchors."""
    x = logits.astype(np.float64)[..., 0]
    t = obj_t.astype(np.float64)[..., 0]
    p = 1 / (1 + np.exp(-x))
    y = (t > 0).astype(np.float64)
    p_t = np.where(y == 1, p, 1 - p)
    a_t = 1.0 if alpha is None else np.where(y == 1, alpha, 1 - alpha)
    weight = np.where(t > 0, t, (t >= 0).astype(np.float64))
    return (-a_t * (1 - p_t) ** gamma * np.log(p_t) * weight).sum(axis=1)


@pytest.mark.parametrize("hybridize", [False, True])
def test_gamma0_no_alpha_is_gluoncv_loss(hybridize):
    args = random_inputs()
    ref = YOLOV3Loss()(*args)
    focal = FocalYOLOV3Loss(alpha=None, gamma=0.0)
    if hybridize:
        focal.hybridize()
    got = focal(*args)
    for name, r, g in zip(["obj", "center", "scale", "cls"], ref, got):
        np.testing.assert_allclose(g.asnumpy(), r.asnumpy(), rtol=1e-5,
                                   err_msg=f"{name} seed {SEED}")


def test_gamma0_alpha_half_is_half_of_bce():
    args = random_inputs(seed=SEED + 1)
    ref = YOLOV3Loss()(*args)[0].asnumpy()
    half = FocalYOLOV3Loss(alpha=0.5, gamma=0.0)(*args)[0].asnumpy()
    np.testing.assert_allclose(2 * half, ref, rtol=1e-5)


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.9, 0.5), (None, 1.0), (0.5, 0.0)])
def test_matches_numpy_focal(alpha, gamma):
    args = random_inputs(seed=SEED + 2)
    got = FocalYOLOV3Loss(alpha=alpha, gamma=gamma)(*args)[0].asnumpy()
    want = focal_numpy(args[0].asnumpy(), args[4].asnumpy(), alpha, gamma)
    np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=f"alpha={alpha} gamma={gamma}")


def test_focusing_lowers_easy_examples():
    # confident correct predictions: the gamma=2 loss is far below the BCE
    args = random_inputs(seed=SEED + 3)
    t = args[4].asnumpy()
    args[0] = mx.nd.array(np.where(t > 0, 6.0, -6.0))
    bce = FocalYOLOV3Loss(None, 0.0)(*args)[0].asnumpy()
    fl = FocalYOLOV3Loss(None, 2.0)(*args)[0].asnumpy()
    assert np.all(fl < 1e-3 * bce)


def test_gradients_finite_for_extreme_logits():
    args = random_inputs(seed=SEED + 4)
    rs = np.random.RandomState(SEED)
    args[0] = mx.nd.array(rs.choice([-200.0, -50.0, 0.0, 50.0, 200.0], size=args[0].shape))
    args[0].attach_grad()
    with mx.autograd.record():
        loss = FocalYOLOV3Loss(alpha=0.25, gamma=0.5)(*args)[0]
    loss.backward()
    assert np.all(np.isfinite(loss.asnumpy())) and np.all(np.isfinite(args[0].grad.asnumpy()))


def test_bad_parameters():
    with pytest.raises(ValueError, match="alpha"):
        FocalYOLOV3Loss(alpha=1.5)
    with pytest.raises(ValueError, match="gamma"):
        FocalYOLOV3Loss(gamma=-1)
    with pytest.raises(TypeError, match="YOLOV3"):
        use_focal_objectness(mx.gluon.nn.Dense(2))


def test_swap_in_tiny_yolo3_train_forward():
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
    from gluoncv.model_zoo import get_model

    mx.random.seed(SEED)
    np.random.seed(SEED)
    net = get_model("yolo3_mobilenet0.25_custom", classes=["lesion"], pretrained_base=False)
    net.initialize()
    size = 64
    transform = YOLO3DefaultTrainTransform(size, size, net, mixup=False)  # before hybridize
    img = mx.nd.array(np.random.randint(0, 255, (size, size, 3)), dtype="uint8")
    boxes = np.array([[5, 5, 30, 40, 0], [20, 10, 50, 60, 0]], dtype=np.float64)
    sample = transform(img, boxes)
    x = sample[0].expand_dims(0)
    targets = [s.expand_dims(0) for s in sample[1:6]]
    gt = sample[6].expand_dims(0)
    net.hybridize()

    def losses():
        with mx.autograd.record():
            out = net(x, gt, *targets)
        mx.autograd.backward(list(out))
        return [o.asnumpy() for o in out]

    original = losses()
    use_focal_objectness(net, alpha=None, gamma=0.0)
    assert isinstance(net._loss, FocalYOLOV3Loss)
    same = losses()
    for o, s in zip(original, same):
        np.testing.assert_allclose(s, o, rtol=1e-5)
    use_focal_objectness(net, alpha=0.25, gamma=2.0)  # hybridized net must retrace
    focal = losses()
    assert focal[0][0] < original[0][0]
    for o, f in zip(original[1:], focal[1:]):
        np.testing.assert_allclose(f, o, rtol=1e-5)
