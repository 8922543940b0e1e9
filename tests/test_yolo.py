"""models/yolo.py: the detector factory, weights loading, model.json, transform net."""
import json

import mxnet as mx
import pytest

from models import yolo, yolo_train

NET = "yolo3_mobilenet0.25_custom"


def test_unknown_network_lists_the_choices():
    with pytest.raises(ValueError) as e:
        yolo.build("yolo3_resnet_custom", ["lesion"])
    for name in yolo.NETWORKS:
        assert name in str(e.value)


def test_build_gives_an_initialised_net_for_our_classes():
    net = yolo.build(NET, ["lesion"])
    assert list(net.classes) == ["lesion"]
    ids, scores, boxes = net(mx.nd.zeros((1, 3, 64, 64)))
    assert boxes.shape[-1] == 4 and ids.shape == scores.shape


def test_init_params_round_trip_and_model_json(tmp_path):
    a = yolo.build(NET, ["lesion"])
    a(mx.nd.random.uniform(shape=(1, 3, 64, 64)))
    (tmp_path / "w").mkdir()
    a.save_parameters(str(tmp_path / "w" / "best.params"))
    b = yolo.build(NET, ["lesion"], init_params=tmp_path / "w" / "best.params")
    assert yolo_train.param_digest(b, trainable_only=False) == \
        yolo_train.param_digest(a, trainable_only=False)
    with open(tmp_path / "model.json", "w") as f:
        json.dump(yolo.model_json(NET, ["lesion"], 64, "w/best.params"), f)
    (c,), info = yolo.load_model_json(tmp_path / "model.json")
    assert info["data_shape"] == 64 and info["net"] == NET and info["members"] == ["w/best.params"]
    assert yolo_train.param_digest(c, trainable_only=False) == \
        yolo_train.param_digest(a, trainable_only=False)
    x = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    assert (a(x)[1] - c(x)[1]).abs().max().asscalar() == 0


def test_ensemble_model_json_and_narrow_heads(tmp_path):
    nets = [yolo.build(NET, ["lesion"], head_scale=0.5) for _ in range(2)]
    for k, n in enumerate(nets):
        n.save_parameters(str(tmp_path / f"m{k}.params"))
    with open(tmp_path / "model.json", "w") as f:
        json.dump(yolo.model_json(NET, ["lesion"], 64, ["m0.params", "m1.params"],
                                  head_scale=0.5), f)
    loaded, info = yolo.load_model_json(tmp_path / "model.json")
    assert len(loaded) == 2 and info["head_scale"] == 0.5
    for a, b in zip(nets, loaded):
        assert yolo_train.param_digest(a) == yolo_train.param_digest(b)
    full = sum(p.data().size for p in yolo.build(NET, ["lesion"]).collect_params().values())
    half = sum(p.data().size for p in nets[0].collect_params().values())
    assert half < full / 2


def test_init_params_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        yolo.build(NET, ["lesion"], init_params=tmp_path / "missing.params")
    two = yolo.build(NET, ["a", "b"])
    two.save_parameters(str(tmp_path / "two.params"))
    with pytest.raises(ValueError, match="same classes"):
        yolo.build(NET, ["lesion"], init_params=tmp_path / "two.params")
    with open(tmp_path / "m.json", "w") as f:
        json.dump({"net": NET}, f)
    with pytest.raises(ValueError, match="missing key"):
        yolo.load_model_json(tmp_path / "m.json")


def test_pretrained_base_without_network_says_what_to_do(tmp_path, monkeypatch):
    # Empty weight cache and a repository URL that refuses connections at once.
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxhome"))
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")
    with pytest.raises(yolo.WeightsUnavailableError) as e:
        yolo.build(NET, ["lesion"], pretrained_base=True)
    msg = str(e.value)
    assert "mobilenet0.25" in msg and str(tmp_path / "mxhome") in msg
    assert "--init-params" in msg and "drop --pretrained-base" in msg


def test_focal_options_swap_the_loss():
    from models.yolo_loss import FocalYOLOV3Loss
    net = yolo.build(NET, ["lesion"], focal_gamma=2.0)
    assert isinstance(net._loss, FocalYOLOV3Loss)
    assert not isinstance(yolo.build(NET, ["lesion"])._loss, FocalYOLOV3Loss)


def test_train_transform_needs_a_fresh_net():
    """MXNET_TRAPS 15: transform_net works; a net that ran hybridised inference does not."""
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
    YOLO3DefaultTrainTransform(64, 64, yolo.transform_net(NET, ["lesion"]))
    used = yolo.build(NET, ["lesion"])
    used.hybridize()
    used(mx.nd.zeros((1, 3, 64, 64)))
    with pytest.raises(ValueError, match="not enough values to unpack"):
        YOLO3DefaultTrainTransform(64, 64, used)


def test_fixed_shape_training_graph_trains_the_same_weights(tiny_detection_data):
    """set_mode(fixed_shape=True) plans the training graph once, with its memory
    (static_alloc, static_shape): the same arithmetic as the dynamic graph, also when a
    batch's padded box count changes the last input's shape (the graph is re-planned for
    it), and across a switch to prediction and back. Tolerance: float32 rounding only."""
    import numpy as np
    from datasets.detector import data as dd
    from models import optim
    data_dir, splits = tiny_detection_data
    classes = ["lesion"]
    data = dd.DetectionData(data_dir, classes, lambda anchors=None: yolo.transform_net(
        NET, classes, anchors))
    loader = dd.train_loader(data.subset(splits["train"], 0, 64, cache=True),
                             data.transforms(64, False, None, 1.0), 2, 0)
    batches = [b for _, b in zip(range(3), yolo_train.endless(loader))]
    # one more box row of padding (-1): a new shape for the graph's last input
    batches.append(list(batches[0][:6]) + [mx.nd.concat(batches[0][6], -mx.nd.ones((2, 1, 4)),
                                                  dim=1)])
    weights, flags = {}, {}
    for fixed in (False, True):
        yolo_train.seed_all(0)
        net = yolo.build(NET, classes, head_scale=0.25)
        trainer = optim.make_trainer(net, None, learning_rate=1e-3, optimizer="adam")
        for k, batch in enumerate(batches):
            if k == 2:  # a validation pass in between re-plans both modes
                yolo_train.set_mode(net, "predict", fixed_shape=fixed)  # always dynamic
                assert dict(net._flags)["static_alloc"] is False
                net(mx.nd.zeros((1, 3, 64, 64)))[0].wait_to_read()
            yolo_train.set_mode(net, "train", fixed_shape=fixed)
            flags[fixed] = dict(net._flags)
            yolo_train.train_step(net, trainer, batch, [mx.cpu()])
        weights[fixed] = {n: p.data().asnumpy() for n, p in
                          net._collect_params_with_prefix().items()}
    assert flags[True] == dict(flags[True], static_alloc=True, static_shape=True)
    assert flags[False]["static_alloc"] is False and flags[False]["static_shape"] is False
    assert weights[True].keys() == weights[False].keys()
    for name, w in weights[False].items():
        np.testing.assert_allclose(weights[True][name], w, rtol=1e-5, atol=1e-6, err_msg=name)
    assert any(not np.array_equal(w, 0) for w in weights[True].values())
