"""Class lists (datasets/prepared/classes.py) and the scripts that read them from the data folder.

References: the lists written by hand here; a folder prepared before classes.txt existed
(the tiny detector fixture writes none) must read as ``["lesion"]``.
"""
import json
import logging

import pytest

import train_filter
import train_yolo3
from datasets.prepared import classes
from tests.yolo_fixtures import make_detection_data


def test_parse_write_read_round_trip(tmp_path):
    assert classes.parse_classes(None) is None
    assert classes.parse_classes(" b, a ,c ") == ["b", "a", "c"]
    classes.write_classes(tmp_path, ["劳损", "cyst", "a b"])
    assert classes.read_classes(tmp_path) == ["劳损", "cyst", "a b"]
    # a labelme labels.txt: __ignore__ and _background_ are not classes
    f = tmp_path / "labels.txt"
    f.write_text("__ignore__\n_background_\nperson\n\nbus\n", encoding="utf-8")
    assert classes.parse_classes(str(f)) == ["person", "bus"]
    for bad, msg in (("a,b,a", "more than once"), (",", "no class names"),
                     (["a\tb"], "without tabs")):
        with pytest.raises(ValueError, match=msg):
            classes.parse_classes(bad)


def test_legacy_folder_reads_as_lesion_with_a_log_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="datasets.prepared.classes"):
        assert classes.data_classes(tmp_path) == ["lesion"]
    assert "no classes.txt" in caplog.text
    assert classes.data_classes(tmp_path, "lesion") == ["lesion"]


def test_disagreeing_classes_are_refused_naming_both(tmp_path):
    classes.write_classes(tmp_path, ["hetero", "hypo"])
    assert classes.data_classes(tmp_path, "hetero,hypo") == ["hetero", "hypo"]
    with pytest.raises(ValueError) as err:
        classes.data_classes(tmp_path, "lesion")
    assert "['lesion']" in str(err.value) and "['hetero', 'hypo']" in str(err.value)
    with pytest.raises(ValueError, match="another order"):
        classes.data_classes(tmp_path, "hypo,hetero")


@pytest.fixture(scope="module")
def two_class_data(tmp_path_factory):
    root, _ = make_detection_data(tmp_path_factory.mktemp("data"), n=6, n_test=2, k=2)
    classes.write_classes(root, ["lesion", "cyst"])
    return root


def test_train_yolo3_refuses_other_classes_before_training(two_class_data, tmp_path):
    args = train_yolo3.parse_args(["--data", str(two_class_data), "--classes", "lesion",
                                   "--out", str(tmp_path), "--gpus", ""])
    with pytest.raises(ValueError, match=r"--classes \['lesion'\] disagrees with the classes "
                                         r"\['lesion', 'cyst'\]"):
        train_yolo3.main(args)
    assert not list(tmp_path.iterdir())  # refused before a run folder was made


def test_find_lr_refuses_other_classes(two_class_data, tmp_path):
    import find_lr
    args = find_lr.parse_args(["--data", str(two_class_data), "--classes", "cyst,lesion",
                               "--out", str(tmp_path), "--gpus", ""])
    with pytest.raises(ValueError, match="another order"):
        find_lr.main(args)


def test_train_filter_refuses_detections_of_other_classes(two_class_data, tmp_path):
    det = tmp_path / "oof.json"
    det.write_text(json.dumps({"classes": ["lesion"], "coords": "half", "images": {}}))
    args = train_filter.parse_args(["--data", str(two_class_data), "--detections", str(det),
                                    "--out", str(tmp_path / "runs")])
    with pytest.raises(ValueError, match=r"detections .*oof.json \['lesion'\] disagrees"):
        train_filter.main(args)
    det.write_text(json.dumps({"classes": ["lesion", "cyst"], "coords": "half", "images": {}}))
    assert train_filter.check_detection_classes(args) == ["lesion", "cyst"]
