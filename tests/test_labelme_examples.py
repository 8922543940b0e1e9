"""prepare_data.py on a labelme example set built like wkentaro/labelme's own examples.

labelme ships ``examples/bbox_detection`` (rectangles, converted by its labelme2voc.py) and
``examples/instance_segmentation`` (polygons, labelme2coco.py): VOC-like pictures labelled
person, bus, car, bottle, chair, sofa and ``__ignore__``, shapes of one object sharing a
``group_id``, old files without ``shape_type``. This set follows those conventions with our
own pictures and points. References: the shapes' points (bounding box by numpy; circle:
centre +- radius; one box per label + group_id, as labelme2coco unions the masks), the mask
bounding box pycocotools computes from the same polygons (what labelme2coco writes), and
GluonCV's ``VOCDetection`` / ``RecordFileDetection`` reading what we wrote.
"""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

import prepare_data
from datasets.prepared.classes import read_classes

LABELS = ["bottle", "bus", "car", "chair", "person", "sofa"]


def shape(label, kind, points, group_id=None):
    s = {"label": label, "points": [[float(x), float(y)] for x, y in points],
         "group_id": group_id, "flags": {}}
    if kind is not None:              # labelme < 3 wrote no shape_type (a polygon)
        s["shape_type"] = kind
    return s


def polygon(rng, cx, cy, rx, ry, n=9):
    # Blunt vertices: a mask (labelme2coco's box comes from one) drops a needle-thin spike.
    t = (np.arange(n) + rng.uniform(-0.2, 0.2, n)) * 2 * math.pi / n
    r = rng.uniform(0.85, 1.0, n)
    return np.stack([cx + rx * r * np.cos(t), cy + ry * r * np.sin(t)], axis=1)


def example_files(rng):
    """``{stem: (width, height, shapes)}`` in the style of labelme's three examples."""
    rect = lambda a, b: [a, b]  # noqa: E731  (two corners, any order, as labelme stores them)
    return {
        # bbox_detection/2011_000003: two people, one rectangle stored bottom-right first
        "2011_000003": (500, 338, [
            shape("person", "rectangle", rect((191.0, 107.37), (313.0, 329.37))),
            shape("person", "rectangle", rect((500.0, 333.0), (365.0, 83.0)))]),
        # bbox_detection/2011_000025: buses at the left border, a car to the right border
        "2011_000025": (500, 375, [
            shape("bus", "rectangle", rect((84.0, 20.38), (435.0, 373.38))),
            shape("bus", "rectangle", rect((1.0, 99.0), (107.0, 282.0))),
            shape("car", "rectangle", rect((409.0, 167.0), (500.0, 266.0)))]),
        # instance_segmentation/2011_000003: a person in two parts (group_id 0), a bottle,
        # an __ignore__ region, a person without group
        "seg_000003": (500, 338, [
            shape("person", "polygon", polygon(rng, 250, 210, 60, 110)),
            shape("person", "polygon", polygon(rng, 450, 180, 50, 95), group_id=0),
            shape("person", "polygon", polygon(rng, 368, 177, 4, 8, n=4), group_id=0),
            shape("bottle", "polygon", polygon(rng, 378, 186, 9, 26)),
            shape("__ignore__", "polygon", polygon(rng, 352, 302, 80, 35))]),
        # instance_segmentation/2011_000006 (labelme < 3: no shape_type): chair to the
        # bottom border, sofas, an __ignore__ patch
        "seg_000006": (500, 375, [
            shape("chair", None, polygon(rng, 330, 320, 160, 70, n=12)),
            shape("sofa", None, polygon(rng, 100, 190, 80, 45)),
            shape("sofa", None, polygon(rng, 80, 300, 25, 10, n=3)),
            shape("sofa", None, polygon(rng, 410, 185, 65, 40)),
            shape("__ignore__", None, polygon(rng, 458, 101, 19, 16, n=4))]),
        # circles (labelme's circle: centre and a point on the rim), one past the border
        "circles": (400, 300, [
            shape("bottle", "circle", [(120.5, 140.25), (150.5, 160.25)]),
            shape("car", "circle", [(380, 60), (380, 100)]),
            shape("person", "rectangle", rect((30, 30), (90, 250)))]),
    }


def write_examples(raw, rng):
    raw.mkdir()
    files = example_files(rng)
    for stem, (w, h, shapes) in files.items():
        img = np.clip(rng.normal(120, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        ext = ".jpg" if stem.startswith("2011") else ".png"
        cv2.imwrite(str(raw / f"{stem}{ext}"), img)
        doc = {"version": "5.2.1" if stem != "seg_000006" else "2.5.6", "flags": {},
               "shapes": shapes, "imagePath": f"{stem}{ext}", "imageData": None,
               "imageHeight": h, "imageWidth": w}
        (raw / f"{stem}.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return files


def reference_objects(w, h, shapes):
    """Expected ``(label, box, difficult)`` per object, from the points by numpy."""
    out, groups = [], {}
    for s in shapes:
        pts = np.asarray(s["points"], float)
        if s.get("shape_type") == "circle":
            r = float(np.hypot(*(pts[1] - pts[0])))
            box = [pts[0][0] - r, pts[0][1] - r, pts[0][0] + r, pts[0][1] + r]
        else:
            box = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
        key = (s["label"], s["group_id"])
        if s["group_id"] is not None and key in groups:
            b = out[groups[key]][1]
            out[groups[key]][1] = [min(b[0], box[0]), min(b[1], box[1]),
                                   max(b[2], box[2]), max(b[3], box[3])]
            continue
        if s["group_id"] is not None:
            groups[key] = len(out)
        out.append([s["label"], box, int(s["label"] == "__ignore__")])
    for o in out:  # clipped to the image, as every converter must
        o[1] = [min(max(o[1][0], 0), w), min(max(o[1][1], 0), h),
                min(max(o[1][2], 0), w), min(max(o[1][3], 0), h)]
    return [tuple(o) for o in out]


def coco_mask_boxes(w, h, shapes):
    """labelme2coco's boxes: pycocotools' bounding box of each instance's rasterised shapes
    (circle as the polygon labelme2coco builds for it); ``{(label, group): [x1, y1, x2, y2]}``."""
    mask_util = pytest.importorskip("pycocotools.mask")
    masks = {}
    for i, s in enumerate(shapes):
        pts = np.asarray(s["points"], float)
        if s.get("shape_type") == "circle":
            r = float(np.hypot(*(pts[1] - pts[0])))
            t = np.linspace(0, 2 * math.pi, max(int(math.pi / math.acos(1 - 1 / r)), 12),
                            endpoint=False)
            pts = np.stack([pts[0][0] + r * np.sin(t), pts[0][1] + r * np.cos(t)], axis=1)
        elif s.get("shape_type") == "rectangle":
            (x1, y1), (x2, y2) = np.sort(pts, axis=0)
            pts = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
        rle = mask_util.merge(mask_util.frPyObjects([pts.ravel().tolist()], h, w))
        key = (s["label"], s["group_id"] if s["group_id"] is not None else f"shape{i}")
        masks[key] = mask_util.merge([masks[key], rle]) if key in masks else rle
    out = {}
    for key, rle in masks.items():
        x, y, bw, bh = mask_util.toBbox(rle).tolist()
        out[key] = [x, y, x + bw, y + bh]
    return out


def gluoncv_voc(data, classes):
    """Every annotation read by GluonCV's VOCDetection: ``{id: (N, 6) x1 y1 x2 y2 cls diff}``."""
    from gluoncv.data import VOCDetection
    ids = sorted(p.stem for p in (data / "Annotations").glob("*.xml"))
    import tempfile
    root = Path(tempfile.mkdtemp(prefix="voc_view", dir=data.parent))
    main = root / "VOC2007" / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "all.txt").write_text("".join(i + "\n" for i in ids))
    (root / "VOC2007" / "Annotations").symlink_to((data / "Annotations").resolve())

    class Ours(VOCDetection):
        CLASSES = tuple(classes)

    ds = Ours(root=str(root), splits=((2007, "all"),))
    return {ids[i]: ds._load_label(i) for i in range(len(ids))}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelme_examples")
    files = write_examples(root / "raw", np.random.default_rng(0))
    summary = prepare_data.main(prepare_data.parse_args(
        ["--raw", str(root / "raw"), "--out", str(root / "data"), "--no-crop", "--no-split",
         "--folds", "0", "--test-frac", "0", "--no-progress"]))
    return files, root / "data", summary


def test_labels_are_classes_sorted_and_recorded(prepared):
    files, data, summary = prepared
    assert read_classes(data) == summary["classes"] == LABELS
    assert (data / "classes.txt").read_text() == "".join(c + "\n" for c in LABELS)
    assert summary["samples"] == len(files) and summary["dropped"] == 0


def test_boxes_and_labels_as_gluoncv_reads_them(prepared):
    files, data, _ = prepared
    voc = gluoncv_voc(data, LABELS)
    n_checked = 0
    for stem, (w, h, shapes) in files.items():
        want = reference_objects(w, h, shapes)
        got = voc[stem]
        assert len(got) == len(want), stem
        for (label, box, difficult), row in zip(want, got):
            # __ignore__ regions are difficult boxes of the first class
            name = LABELS[0] if label == "__ignore__" else label
            assert LABELS[int(row[4])] == name and int(row[5]) == difficult, (stem, label)
            # VOC stores 2 decimals
            assert np.abs(row[:4] - np.asarray(box)).max() <= 0.006, (stem, label, row, box)
            n_checked += 1
    assert n_checked == 17


def test_boxes_match_labelme2coco_mask_boxes_within_a_pixel(prepared):
    files, data, _ = prepared
    voc = gluoncv_voc(data, LABELS)
    worst = 0.0
    for stem, (w, h, shapes) in files.items():
        ref = coco_mask_boxes(w, h, shapes)
        rows = voc[stem]
        # the same instance order: shapes in file order, a group at its first shape
        assert len(ref) == len(rows), stem
        for (key, box), row in zip(ref.items(), rows):
            err = np.abs(row[:4] - np.asarray(box)).max()
            worst = max(worst, err)
            assert err <= 1.0, (stem, key, row[:4].tolist(), box)
    assert worst > 0  # the rasterised reference is really a different computation


def test_records_class_ids_follow_classes_txt(prepared):
    from im2rec_tools.records import load_detection_records
    _, data, _ = prepared
    voc = gluoncv_voc(data, LABELS)
    ds, ids = load_detection_records(data)
    for i in range(len(ds)):
        _, label = ds[i]
        ref = voc[ids[i]]
        assert label[:, 4].tolist() == ref[:, 4].tolist(), ids[i]
        assert np.abs(label[:, :4] - ref[:, :4]).max() <= 1.0


def run(raw, out, *extra):
    return prepare_data.main(prepare_data.parse_args(
        ["--raw", str(raw), "--out", str(out), "--no-crop", "--no-split", "--folds", "0",
         "--test-frac", "0", "--no-progress", *extra]))


def test_classes_option_fixes_the_order_and_refuses_others(prepared, tmp_path):
    raw = Path(prepared[1]).parent / "raw"
    order = ["sofa", "person", "chair", "car", "bus", "bottle"]
    summary = run(raw, tmp_path / "ordered", "--classes", ",".join(order))
    assert summary["classes"] == read_classes(tmp_path / "ordered") == order
    voc = gluoncv_voc(tmp_path / "ordered", order)
    assert [order[int(c)] for c in voc["2011_000025"][:, 4]] == ["bus", "bus", "car"]
    # labelme's labels.txt (with __ignore__ and _background_ first) as the class list
    labels_txt = tmp_path / "labels.txt"
    labels_txt.write_text("__ignore__\n_background_\n" + "\n".join(order + ["dog"]) + "\n")
    assert run(raw, tmp_path / "txt", "--classes", str(labels_txt))["classes"] == order + ["dog"]
    with pytest.raises(ValueError, match=r"labels \['bottle', 'sofa'\] are not classes"):
        run(raw, tmp_path / "refused", "--classes", "bus,car,chair,person")
    assert not (tmp_path / "refused").exists()


def test_label_map_merges_and_renames(prepared, tmp_path):
    raw = Path(prepared[1]).parent / "raw"
    summary = run(raw, tmp_path / "merged", "--label-map",
                  "person, bus, car=thing; bottle,chair,sofa=furniture")
    assert summary["classes"] == ["furniture", "thing"]
    assert summary["boxes_per_class"] == {"furniture": 6, "thing": 9}
    with pytest.raises(ValueError, match="has no '='"):
        run(raw, tmp_path / "bad", "--label-map", "person")
    with pytest.raises(ValueError, match="not in --classes"):
        run(raw, tmp_path / "bad", "--label-map", "person=human", "--classes", "person")


def test_cli_refuses_a_malformed_map_with_a_message(prepared, tmp_path):
    import subprocess
    import sys
    raw = Path(prepared[1]).parent / "raw"
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(repo / "prepare_data.py"), "--raw", str(raw),
                           "--out", str(tmp_path / "d"), "--label-map", "a=b=c;d"],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "prepare_data: error: --label-map" in proc.stderr
