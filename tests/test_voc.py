"""VOC XML writer/reader (datasets/prepared/voc.py) against GluonCV's own VOC reader."""
import numpy as np
import pytest

from datasets.prepared.voc import VOCFormatError, read_voc, write_voc

OBJECTS = [{"name": "lesion", "box": [10.5, 20.0, 60.25, 45.0], "difficult": 0},
           {"name": "lesion", "box": [0.0, 0.0, 99.0, 79.0], "difficult": 1},
           {"name": "lesion", "box": [3.0, 4.5, 7.0, 9.0], "difficult": 0, "truncated": 1}]


def test_round_trip(tmp_path):
    path = write_voc(tmp_path / "a.xml", "a.jpg", 100, 80, OBJECTS)
    got = read_voc(path)
    assert (got["filename"], got["width"], got["height"], got["depth"]) == ("a.jpg", 100, 80, 3)
    assert [o["box"] for o in got["objects"]] == [o["box"] for o in OBJECTS]
    assert [o["difficult"] for o in got["objects"]] == [0, 1, 0]
    assert [o["truncated"] for o in got["objects"]] == [0, 0, 1]
    assert not list(tmp_path.glob("*.tmp"))


def test_gluoncv_voc_detection_reads_the_same_boxes(tmp_path):
    """GluonCV's VOCDetection subtracts 1 from every stored coordinate; our writer adds it."""
    from gluoncv.data import VOCDetection
    root = tmp_path / "VOC2007"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    write_voc(root / "Annotations" / "a.xml", "a.jpg", 100, 80, OBJECTS)

    class LesionVOC(VOCDetection):
        CLASSES = ("lesion",)

    ds = LesionVOC(root=str(tmp_path), splits=((2007, "train"),))
    label = ds._load_label(0)                         # (N, 6): x1 y1 x2 y2 cls difficult
    assert np.allclose(label[:, :4], [o["box"] for o in OBJECTS])
    assert label[:, 5].tolist() == [0, 1, 0]


def test_unsafe_and_malformed_xml_refused(tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx">'
                    '<!ENTITY y "&x;&x;&x;&x;">]><annotation>&y;</annotation>')
    with pytest.raises(VOCFormatError, match="unsafe"):
        read_voc(bomb)
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><size><width>3</width>")
    with pytest.raises(VOCFormatError, match="not well-formed"):
        read_voc(bad)
    nosize = tmp_path / "nosize.xml"
    nosize.write_text("<annotation><filename>x</filename></annotation>")
    with pytest.raises(VOCFormatError, match="no <size>"):
        read_voc(nosize)
    text = tmp_path / "text.xml"
    text.write_text("<annotation><size><width>a</width><height>3</height></size></annotation>")
    with pytest.raises(VOCFormatError, match="should be a number"):
        read_voc(text)


def test_zero_area_box_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no area"):
        write_voc(tmp_path / "z.xml", "z.jpg", 10, 10, [{"name": "lesion", "box": [3, 3, 3, 8]}])
    assert not (tmp_path / "z.xml").exists()
