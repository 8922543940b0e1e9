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
