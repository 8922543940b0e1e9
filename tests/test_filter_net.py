"""Filter network: input normalisation, output shape/range, HingeLoss learning, weight loading."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon
from mxnet.gluon.data.vision import transforms
from mxnet.gluon.model_zoo import vision

from models import filter_net


def test_to_input_matches_gluon_transforms():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    ref = transforms.Compose([transforms.ToTensor(),
                              transforms.Normalize(filter_net.IMAGENET_MEAN,
                                                   filter_net.IMAGENET_STD)])
    want = np.stack([ref(mx.nd.array(c, dtype=np.uint8)).asnumpy() for c in crops])
    got = filter_net.to_input(crops)
    assert got.shape == (3, 3, 20, 24) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_output_shape_and_range():
    net = filter_net.build(seed=0)
    net.hybridize()
    rng = np.random.default_rng(1)
    x = mx.nd.array(filter_net.to_input(rng.integers(0, 256, (5, 128, 128, 3), dtype=np.uint8)))
    y = net(x).asnumpy()
    assert y.shape == (5, 1)
    assert np.all(np.abs(y) < 1)
    # even absurd inputs stay inside [-1, 1] (tanh; float32 may round to exactly ±1)
    assert np.all(np.abs(net(x * 1e4).asnumpy()) <= 1)


def test_head_layout():
    net = filter_net.FilterNet(dropout=0.3)
    dense = [b for b in net.head if isinstance(b, gluon.nn.Dense)]
    assert [d._units for d in dense] == [256, 64, 1]
    assert sum(isinstance(b, gluon.nn.Dropout) for b in net.head) == 2
    assert not any(isinstance(b, gluon.nn.Dropout) for b in filter_net.FilterNet(dropout=0).head)


def test_hinge_loss_decreases_on_separable_set():
    # Positives dark centre, negatives bright centre: separable; ±1 float32 labels.
    rng = np.random.default_rng(2)
    n, s = 16, 32
    crops = rng.integers(90, 160, (n, s, s, 3)).astype(np.uint8)
    labels = np.where(np.arange(n) % 2 == 0, 1.0, -1.0).astype(np.float32)
    crops[labels == 1, 8:24, 8:24] = 30
    crops[labels == -1, 8:24, 8:24] = 220
    net = filter_net.build(seed=0, dropout=0.0)
    net.hybridize()
    x, y = mx.nd.array(filter_net.to_input(crops)), mx.nd.array(labels)
    # train_filter.py's own settings (lr 0.01, margin 0.5 below tanh's bound of 1). With lr
    # 0.05 and margin 1 the tanh saturated within 8 steps on MKLDNN's AVX2 kernels (every
    # score +1.000 or +0.999: the order kept, the sign lost) and not on AVX-512 ones.
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01,
                                                          "momentum": 0.9})
    loss_fn = gluon.loss.HingeLoss(margin=0.5)
    losses = []
    for _ in range(12):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(n)
        losses.append(float(loss.mean().asscalar()))
    assert losses[-1] < losses[0] * 0.7, f"hinge loss did not decrease: {losses}"
    # What the steps learned, with the batch statistics they were taken with: the classes
    # are told apart by the sign of the score, the hinge loss's own decision rule.
    with autograd.train_mode():
        train_scores = net(x).asnumpy().ravel()
    assert (np.sign(train_scores) == labels).mean() >= 0.9, train_scores
    # Predict mode uses BatchNorm's running statistics, which 12 steps (momentum 0.9) leave
    # 28 % at their initial values. Let them settle on the same data, without updates, as
    # one does after short training; then the deployed scores sign and rank like the
    # trained ones.
    for _ in range(60):
        with autograd.train_mode():
            net(x)
    with autograd.predict_mode():
        scores = net(x).asnumpy().ravel()
    assert (np.sign(scores) == labels).mean() >= 0.9, scores
    pos, neg = scores[labels == 1], scores[labels == -1]
    assert (pos[:, None] > neg[None, :]).mean() >= 0.95, scores  # ROC AUC


def test_init_params_filter_file_and_resnet_file(tmp_path):
    net = filter_net.build(seed=3)
    x = mx.nd.array(filter_net.to_input(
        np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)))
    net.save_parameters(str(tmp_path / "filter.params"))
    again = filter_net.build(seed=4, init_params=tmp_path / "filter.params")
    np.testing.assert_allclose(again(x).asnumpy(), net(x).asnumpy(), rtol=1e-5)

    resnet = vision.resnet18_v2()
    resnet.initialize(mx.init.Xavier(), ctx=mx.cpu())
    resnet(mx.nd.zeros((1, 3, 32, 32)))
    resnet.save_parameters(str(tmp_path / "resnet.params"))
    from_resnet = filter_net.build(seed=5, init_params=tmp_path / "resnet.params")
    np.testing.assert_allclose(from_resnet.features(x).asnumpy(), resnet.features(x).asnumpy(),
                               rtol=1e-5)

    mx.nd.save(str(tmp_path / "junk.params"), {"foo": mx.nd.zeros(3)})
    with pytest.raises(ValueError, match="neither a filter network file nor a resnet18_v2"):
        filter_net.build(init_params=tmp_path / "junk.params")


def test_pretrained_offline_gives_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Name or service not known")
    monkeypatch.setattr(vision, "resnet18_v2", offline)
    with pytest.raises(RuntimeError, match="--init-params"):
        filter_net.build(pretrained=True)


def test_ensemble_is_the_mean_of_its_members_and_old_specs_still_load(tmp_path):
    import json
    paths = []
    for seed in (1, 2, 3):
        net = filter_net.build(seed=seed, dropout=0.0)
        paths.append(tmp_path / f"m{seed}.params")
        net.save_parameters(str(paths[-1]))
    crops = np.random.RandomState(0).randint(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    each = [filter_net.score_crops(filter_net.load_members([p]), crops) for p in paths]
    assert np.abs(each[0] - each[1]).max() > 1e-4  # three different nets, not one
    ensemble = filter_net.load_members(paths)
    assert isinstance(ensemble, filter_net.FilterEnsemble)
    np.testing.assert_allclose(filter_net.score_crops(ensemble, crops), np.mean(each, axis=0),
                               atol=1e-6)
    spec = {"threshold": 0.0, "members": [p.name for p in paths], "net": {"dropout": 0.0}}
    (tmp_path / "filter.json").write_text(json.dumps(spec))
    net, _ = filter_net.load_filter(tmp_path / "filter.json")
    np.testing.assert_allclose(filter_net.score_crops(net, crops), np.mean(each, axis=0),
                               atol=1e-6)
    # a filter.json of an older run names one file in "params"
    (tmp_path / "filter.json").write_text(json.dumps({"threshold": 0.0, "params": "m2.params"}))
    net, _ = filter_net.load_filter(tmp_path / "filter.json")
    assert isinstance(net, filter_net.FilterNet)
    np.testing.assert_allclose(filter_net.score_crops(net, crops), each[1], atol=1e-6)
    (tmp_path / "filter.json").write_text(json.dumps({"threshold": 0.0, "members": ["gone"]}))
    with pytest.raises(FileNotFoundError, match="gone"):
        filter_net.load_filter(tmp_path / "filter.json")
