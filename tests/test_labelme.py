"""labelme reader (datasets/prepared/labelme.py) on hand-written files.

Reference: the bounding box of a shape's points computed directly with numpy (circle:
centre +- radius), and the image bytes the JSON points at or embeds.
"""
import base64
import json
import math

import cv2
import numpy as np
import pytest

from datasets.prepared import labelme
from datasets.prepared.errors import BadFileError


def write_image(path, seed=0, size=(60, 80)):
    img = np.random.default_rng(seed).integers(0, 255, size + (3,), dtype=np.uint8)
    path.write_bytes(cv2.imencode(path.suffix, img)[1].tobytes())
    return img


def doc(shapes, image_path, data=None, w=80, h=60):
    return {"version": "5.2.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": data, "imageHeight": h, "imageWidth": w}


def shape(label, kind, points, **extra):
    return {"label": label, "points": points, "group_id": None, "shape_type": kind,
            "flags": {}, **extra}


def write_json(path, obj):
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


SHAPES = [
    shape("lesion", "rectangle", [[50.5, 40.0], [10.0, 5.25]]),        # corners in any order
    shape("lesion", "polygon", [[12, 30], [25, 22], [31, 41], [14, 44]]),
    shape("lesion", "circle", [[40, 30], [43, 34]]),                    # radius 5
    shape("lesion", "ellipse", [[60 + 8 * math.cos(t), 20 + 4 * math.sin(t)]
                                for t in np.linspace(0, 2 * math.pi, 17)]),
    shape("lesion", "sector", [[30, 50], [20, 58], [40, 58]]),
    shape("lesion", "linestrip", [[1, 2], [7, 9], [3, 12]]),
    shape("lesion", None, [[5, 5], [9, 7], [6, 11]]),                   # labelme < 3: polygon
]


def expected_box(s):
    pts = np.asarray(s["points"], float)
    if s["shape_type"] == "circle":
        r = float(np.hypot(*(pts[1] - pts[0])))
        return [pts[0][0] - r, pts[0][1] - r, pts[0][0] + r, pts[0][1] + r]
    return [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]


def test_every_shape_type_is_its_bounding_box(tmp_path):
    write_image(tmp_path / "a.png")
    path = write_json(tmp_path / "a.json", doc(SHAPES, "a.png"))
    ann = labelme.read_labelme(path)
    assert ann["image_path"] == tmp_path / "a.png"
    assert len(ann["objects"]) == len(SHAPES)
    for obj, s in zip(ann["objects"], SHAPES):
        assert np.allclose(obj["box"], expected_box(s)), s["shape_type"]
        assert obj["name"] == "lesion" and obj["difficult"] == 0
    assert [k for k, _ in ann["notes"]] == []


def test_unknown_types_ignore_and_flags(tmp_path):
    write_image(tmp_path / "b.jpg")
    shapes = [shape("lesion", "bezier", [[5, 6], [20, 9], [11, 30]]),   # unknown, >= 2 points
              shape("lesion", "blob", [[5, 6]]),                          # unknown, 1 point
              shape("__ignore__", "rectangle", [[1, 1], [9, 9]]),
              shape("lesion", "rectangle", [[2, 2], [8, 8]], flags={"difficult": True}),
              shape("lesion", "polygon", "not a list")]
    path = write_json(tmp_path / "b.json", doc(shapes, "b.jpg"))
    ann = labelme.read_labelme(path)
    boxes = [o["box"] for o in ann["objects"]]
    assert boxes == [[5, 6, 20, 30], [1, 1, 9, 9], [2, 2, 8, 8]]
    assert [o["difficult"] for o in ann["objects"]] == [0, 1, 1]
    kinds = [k for k, _ in ann["notes"]]
    assert kinds.count("warning") == 1 and kinds.count("skipped") == 2
    assert "bezier" in ann["notes"][0][1]
    # __ignore__ never becomes a plain object: with ignore="skip" it is left out.
    skip = labelme.read_labelme(path, ignore="skip")
    assert [o["box"] for o in skip["objects"]] == [[5, 6, 20, 30], [2, 2, 8, 8]]
    assert ("ignored" in [k for k, _ in skip["notes"]])


def test_windows_image_path_and_non_ascii_names(tmp_path):
    img = write_image(tmp_path / "扫描 图像 1.png", seed=3)
    path = write_json(tmp_path / "病人 1.json",
                      doc([shape("劳损", "rectangle", [[1, 2], [30, 40]])],
                          r"C:\Users\医生\Desktop\扫描 图像 1.png"))
    ann = labelme.read_labelme(path, label_map={"劳损": "lesion"})
    assert ann["image_path"] == tmp_path / "扫描 图像 1.png"
    assert np.array_equal(labelme.load_image(ann), img)
    assert ann["objects"][0]["name"] == "lesion"
    # relative Windows path into a sub-folder
    (tmp_path / "imgs").mkdir()
    write_image(tmp_path / "imgs" / "x.png")
    path2 = write_json(tmp_path / "x.json", doc([], r"imgs\x.png"))
    assert labelme.read_labelme(path2)["image_path"] == tmp_path / "imgs" / "x.png"


def test_embedded_image_data(tmp_path):
    src = tmp_path / "orig.png"
    img = write_image(src, seed=5)
    data = base64.b64encode(src.read_bytes()).decode("ascii")
    src.unlink()
    path = write_json(tmp_path / "e.json", doc([shape("lesion", "rectangle", [[0, 0], [5, 5]])],
                                               "gone.png", data=data))
    ann = labelme.read_labelme(path)
    assert ann["image_path"] is None
    assert np.array_equal(labelme.load_image(ann), img)


def test_label_map(tmp_path):
    write_image(tmp_path / "m.png")
    shapes = [shape("strain", "rectangle", [[0, 0], [5, 5]]),
              shape("cyst", "rectangle", [[1, 1], [6, 6]]),
              shape("artefact", "rectangle", [[1, 1], [6, 6]]),
              shape("other", "rectangle", [[2, 2], [7, 7]])]
    path = write_json(tmp_path / "m.json", doc(shapes, "m.png"))
    # Labels are classes; the map renames and merges, unmapped labels keep their name.
    plain = labelme.read_labelme(path)
    assert [o["name"] for o in plain["objects"]] == ["strain", "cyst", "artefact", "other"]
    mapping = labelme.parse_label_map("strain, cyst=lesion; artefact=__ignore__")
    assert mapping == {"strain": "lesion", "cyst": "lesion", "artefact": "__ignore__"}
    ann = labelme.read_labelme(path, label_map=mapping)
    assert [(o["label"], o["name"], o["difficult"]) for o in ann["objects"]] == [
        ("strain", "lesion", 0), ("cyst", "lesion", 0), ("artefact", "__ignore__", 1),
        ("other", "other", 0)]
    # the older one-pair-per-comma form still reads
    assert labelme.parse_label_map("strain=lesion,artefact=__ignore__") == {
        "strain": "lesion", "artefact": "__ignore__"}
    f = write_json(tmp_path / "map.json", {"strain": "lesion"})
    assert labelme.parse_label_map(str(f), ["lesion"]) == {"strain": "lesion"}
    with pytest.raises(ValueError, match="not in --classes"):
        labelme.parse_label_map("strain=tumour", ["lesion"])
    for bad, msg in (("strain", "has no '='"), ("a=x;a=y", "mapped to both"), ("=x", "empty label"),
                     ("a=", "one class name"), (";", "no mapping"), ("a=x,b", "one class name"),
                     ("a=x,b=y,c", "cannot read")):
        with pytest.raises(ValueError, match=msg):
            labelme.parse_label_map(bad)


def test_group_id_shapes_are_one_object(tmp_path):
    """labelme's instance convention (labelme2coco): same label + same group_id = one object."""
    write_image(tmp_path / "g.png")
    shapes = [shape("person", "polygon", [[10, 10], [30, 12], [20, 40]], group_id=0),
              shape("person", "polygon", [[40, 5], [50, 8], [45, 20]], group_id=0),
              shape("person", "polygon", [[60, 30], [70, 35], [65, 50]], group_id=None),
              shape("bottle", "rectangle", [[1, 1], [4, 9]], group_id=0)]
    path = write_json(tmp_path / "g.json", doc(shapes, "g.png"))
    ann = labelme.read_labelme(path)
    assert [(o["name"], o["box"]) for o in ann["objects"]] == [
        ("person", [10, 5, 50, 40]), ("person", [60, 30, 70, 50]), ("bottle", [1, 1, 4, 9])]
    assert [k for k, _ in ann["notes"]] == ["merged"]


def test_broken_and_missing(tmp_path):
    write_image(tmp_path / "k.png")
    broken = tmp_path / "k.json"
    broken.write_text('{"shapes": [ {"label": "x", ', encoding="utf-8")
    with pytest.raises(BadFileError, match="broken JSON at line 1"):
        labelme.read_labelme(broken)
    empty = tmp_path / "empty.json"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(BadFileError, match="empty JSON"):
        labelme.read_labelme(empty)
    notlabelme = write_json(tmp_path / "n.json", {"images": []})
    with pytest.raises(BadFileError, match="not a labelme file"):
        labelme.read_labelme(notlabelme)
    missing = write_json(tmp_path / "gone.json", doc([], "nowhere.png"))
    with pytest.raises(BadFileError, match="image missing"):
        labelme.read_labelme(missing)
