"""prepare_data.py end to end: phantom recovery, plain labelme folders, bad input, --out policy.

The phantom test maps every prepared VOC box back to source pixels with the manifest
offsets and matches it to ``truth.json`` (IoU >= 0.9, right side); records are read back
with GluonCV's ``RecordFileDetection``.
"""
import csv
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import prepare_data
from datasets.phantom import generator as phantom
from datasets.prepared.recovery import prepared_boxes, recovery
from datasets.prepared.redbox import cr_channel
from datasets.prepared.splits import check_splits
from datasets.prepared.voc import read_voc
from im2rec_tools.records import load_detection_records

REPO = Path(__file__).resolve().parents[1]
N_PHANTOM = 60
MANIFEST = ("id,source,group,side,x_offset,y_offset,width,height,n_boxes,ref_x_offset,"
            "ref_y_offset,ref_width,ref_height,annotation,rec_idx").split(",")


def run(raw, out, *extra):
    return prepare_data.main(prepare_data.parse_args(
        ["--raw", str(raw), "--out", str(out), "--no-progress", *extra]))


def manifest(data):
    with open(Path(data) / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    phantom.generate(root / "raw", N_PHANTOM, seed=3, progress=False)
    summary = run(root / "raw", root / "data")
    return root / "raw", root / "data", summary


def test_phantom_boxes_recovered_on_the_right_side(phantom_set):
    raw, data, summary = phantom_set
    rec = recovery(raw, data, iou_min=0.9)
    assert rec["rate"] == 1.0, rec["misses"][:5]
    assert rec["extra"] == 0
    truth = json.loads((raw / "truth.json").read_text())
    assert summary["boxes"] == rec["n_truth"] == sum(len(i["boxes"]) for i in truth["images"])
    assert summary["sources"] == N_PHANTOM and summary["skipped_files"] == 0
    # both-sided screenshots give two samples, each the other's reference
    rows = {(r["source"], r["side"]): r for r in manifest(data)}
    both = [i for i in truth["images"] if {b["side"] for b in i["boxes"]} == {"left", "right"}]
    assert summary["both_sides"] == len(both) > 0
    for im in both:
        src = im["labelme"] if im["annotation"] == "labelme" else im["file"]
        left, right = rows[(src, "L")], rows[(src, "R")]
        assert (left["ref_x_offset"], left["ref_width"]) == (right["x_offset"], right["width"])
        assert (right["ref_x_offset"], right["ref_width"]) == (left["x_offset"], left["width"])


def test_phantom_halves_references_and_no_red(phantom_set):
    raw, data, _ = phantom_set
    rows = manifest(data)
    assert list(rows[0].keys()) == MANIFEST
    truth = {i["file"]: i for i in json.loads((raw / "truth.json").read_text())["images"]}
    for r in rows:
        img = cv2.imread(str(data / "JPEGImages" / f"{r['id']}.jpg"))
        ref = cv2.imread(str(data / "Reference" / f"{r['id']}.jpg"))
        assert img.shape[:2] == (int(r["height"]), int(r["width"]))
        assert ref.shape[:2] == (int(r["ref_height"]), int(r["ref_width"]))
        # no red left: the Cr channel stays near grey (red ink is > 150)
        assert int(cr_channel(img).max()) <= 140, r["id"]
        assert int(cr_channel(ref).max()) <= 140, r["id"]
        # the half lies on its panel of the source screenshot
        im = truth.get(r["source"]) or next(t for t in truth.values() if t["labelme"] == r["source"])
        panel = im["panels"]["left" if r["side"] == "L" else "right"]
        x0, y0 = int(r["x_offset"]), int(r["y_offset"])
        assert x0 <= panel[0] + 2 and y0 <= panel[1] + 2
        assert x0 + int(r["width"]) >= panel[2] - 2 and y0 + int(r["height"]) >= panel[3] - 2


def test_phantom_splits_and_records(phantom_set):
    _, data, summary = phantom_set
    rows = manifest(data)
    sp = json.loads((data / "splits.json").read_text())
    group = {r["id"]: r["group"] for r in rows}
    check_splits(sp, group)
    assert sp["k"] == 5 and len(sp["folds"]) == 5 and sp["group_by"] == "source"
    # the two halves of a screenshot stay together
    assert all(r["group"] == r["source"] for r in rows)
    ds, ids = load_detection_records(data)
    assert sorted(ids) == sorted(group) and len(ds) == summary["records"] == len(rows)
    by_id = {r["id"]: r for r in rows}
    for i in range(0, len(ds), 7):
        _, label = ds[i]
        voc = read_voc(data / "Annotations" / f"{ids[i]}.xml")
        assert np.abs(label[:, :4] - np.array([o["box"] for o in voc["objects"]])).max() <= 1
        assert int(by_id[ids[i]]["rec_idx"]) == int(ds._record.keys[i])
    lines = (data / "records" / "all.lst").read_text().splitlines()
    assert len(lines) == len(rows)


def dual_panel(rng, boxes, w=360, h=220, thickness=2):
    """A small screenshot: black border, two speckled panels, red boxes burnt in."""
    img = np.zeros((h, w, 3), np.uint8)
    for x0 in (20, w // 2 + 5):
        panel = np.clip(rng.normal(110, 35, (h - 40, w // 2 - 25)), 25, 255).astype(np.uint8)
        img[20:h - 20, x0:x0 + w // 2 - 25] = panel[..., None]
    cv2.putText(img, "L12-5", (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
    for b in boxes:
        cv2.rectangle(img, (b[0], b[1]), (b[2], b[3]), (10, 20, 240), thickness)
    return img


def labelme_doc(shapes, image, w, h):
    return {"version": "5.2.1", "flags": {}, "shapes": shapes, "imagePath": image,
            "imageData": None, "imageWidth": w, "imageHeight": h}


def shape(kind, pts, label="lesion"):
    return {"label": label, "points": pts, "shape_type": kind, "group_id": None, "flags": {}}


def test_plain_labelme_folder_no_crop_no_split(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    raw.mkdir()
    expected = {}
    for k, name in enumerate(["a", "b b", "病例"]):
        img = np.clip(rng.normal(100, 30, (90, 120, 3)), 0, 255).astype(np.uint8)
        cv2.imencode(".png", img)[1].tofile(str(raw / f"{name}.png"))
        shapes = [shape("rectangle", [[100.5, 60], [10, 12.25]]),
                  shape("polygon", [[30, 20], [50, 25], [40, 44]]),
                  shape("circle", [[70, 40], [73, 44]]),
                  shape("ellipse", [[60 + 10 * math.cos(t), 70 + 6 * math.sin(t)]
                                    for t in np.linspace(0, 2 * math.pi, 13)])]
        (raw / f"{name}.json").write_text(json.dumps(labelme_doc(shapes, f"{name}.png", 120, 90),
                                                     ensure_ascii=False), encoding="utf-8")
        boxes = []
        for s in shapes:
            p = np.array(s["points"], float)
            if s["shape_type"] == "circle":
                r = float(np.hypot(*(p[1] - p[0])))
                boxes.append([p[0][0] - r, p[0][1] - r, p[0][0] + r, p[0][1] + r])
            else:
                boxes.append([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()])
        expected[f"{name}.json"] = boxes
    data = tmp_path / "data"
    summary = run(raw, data, "--no-crop", "--no-split", "--folds", "0", "--test-frac", "0")
    assert summary["samples"] == 3 and summary["boxes"] == 12 and summary["dropped"] == 0
    got = prepared_boxes(data)
    for src, boxes in expected.items():
        assert np.allclose([b for _, b, _ in got[src]], boxes), src
    rows = manifest(data)
    assert {r["side"] for r in rows} == {"full"} and {r["x_offset"] for r in rows} == {"0"}
    ids = sorted(r["id"] for r in rows)
    assert ids[0] == "a" and all(i.isascii() and " " not in i for i in ids)
    assert not (data / "Reference").exists()


def write_bad_folder(raw, rng):
    raw.mkdir()
    good = {"good1.jpg": [[40, 50, 100, 110]], "good2.png": [[220, 60, 300, 150]]}
    for name, boxes in good.items():
        cv2.imwrite(str(raw / name), dual_panel(rng, boxes))
    (raw / "random.jpg").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    png = cv2.imencode(".png", dual_panel(rng, [[40, 50, 100, 110]]))[1].tobytes()
    (raw / "truncated.png").write_bytes(png[: len(png) // 2])
    (raw / "empty.png").write_bytes(b"")
    cv2.imwrite(str(raw / "black.jpg"), np.zeros((200, 300, 3), np.uint8))
    cv2.imwrite(str(raw / "broken.png"), dual_panel(rng, []))
    (raw / "broken.json").write_text('{"shapes": [{"label": ', encoding="utf-8")
    (raw / "orphan.json").write_text(json.dumps(labelme_doc([], "missing.png", 360, 220)))
    cv2.imwrite(str(raw / "boxes.png"), dual_panel(rng, []))
    shapes = [shape("rectangle", [[400, 300], [450, 350]]),      # wholly outside
              shape("rectangle", [[60, 60], [60, 90]]),          # zero area
              shape("rectangle", [[40, 40], [90, 90]])]          # fine
    (raw / "boxes.json").write_text(json.dumps(labelme_doc(shapes, "boxes.png", 360, 220)))
    return {"random.jpg", "truncated.png", "empty.png", "black.jpg", "broken.json",
            "orphan.json"}


def test_bad_input_skipped_counted_and_strict_stops(tmp_path):
    rng = np.random.default_rng(1)
    bad = write_bad_folder(tmp_path / "raw", rng)
    data = tmp_path / "data"
    summary = run(tmp_path / "raw", data, "--folds", "0", "--test-frac", "0")
    assert summary["skipped_files"] == len(bad)
    assert {s["file"] for s in summary["skipped"]} == bad
    reasons = {s["file"]: s["reason"] for s in summary["skipped"]}
    assert "truncated PNG" in reasons["truncated.png"] and "empty file" in reasons["empty.png"]
    assert "all-black" in reasons["black.jpg"] and "broken JSON" in reasons["broken.json"]
    assert "image missing" in reasons["orphan.json"] and "decoded" in reasons["random.jpg"]
    assert summary["dropped_by_reason"] == {"outside_image": 1, "zero_area": 1}
    assert {r["source"] for r in manifest(data)} == {"good1.jpg", "good2.png", "boxes.json"}
    log = list(csv.DictReader(open(data / "prepare_log.csv", newline="")))
    assert bad <= {r["source"] for r in log if r["kind"] == "skipped_file"}
    assert sorted(r["code"] for r in log if r["kind"] == "dropped") == ["outside_image",
                                                                        "zero_area"]
    # --strict: non-zero exit at the first bad file, DATA left as it was
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    proc = subprocess.run([sys.executable, str(REPO / "prepare_data.py"), "--raw",
                           str(tmp_path / "raw"), "--out", str(data), "--strict", "--no-progress",
                           "--folds", "0", "--test-frac", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "prepare_data: error:" in proc.stderr and "Traceback" not in proc.stderr
    after = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    assert after == before


def test_out_folder_policy_and_determinism(tmp_path):
    rng = np.random.default_rng(2)
    raw = tmp_path / "raw"
    raw.mkdir()
    for k in range(6):
        cv2.imwrite(str(raw / f"s{k}.png"), dual_panel(rng, [[40 + 5 * k, 50, 110, 120]]))
    args = ("--folds", "2", "--test-frac", "0.3", "--seed", "4")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a prepare_data output"):
        run(raw, foreign, *args)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    run(raw, foreign, *args, "--overwrite")
    assert (foreign / "notes.txt").read_text() == "mine" and (foreign / "manifest.csv").exists()
    data = tmp_path / "data"
    run(raw, data, *args)
    first = {n: (data / n).read_bytes() for n in ("manifest.csv", "splits.json",
                                                  "records/all.lst", "records/all.rec")}
    # an earlier output is replaced whole: same input and seed, same bytes; stale files go
    (raw / "s5.png").unlink()
    run(raw, data, *args)
    assert not (data / "JPEGImages" / "s5_L.jpg").exists()
    assert not [p for p in data.iterdir() if p.name.startswith(".")]
    rng = np.random.default_rng(2)                 # redraw the same six screenshots
    for k in range(6):
        cv2.imwrite(str(raw / f"s{k}.png"), dual_panel(rng, [[40 + 5 * k, 50, 110, 120]]))
    run(raw, data, *args)
    assert {n: (data / n).read_bytes() for n in first} == first


def test_groups_csv_keeps_patients_together(tmp_path):
    rng = np.random.default_rng(3)
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = ["file,patient"]
    for k in range(10):
        cv2.imwrite(str(raw / f"s{k}.png"), dual_panel(rng, [[40, 50, 110, 120],
                                                             [220, 50, 290, 120]]))
        lines.append(f"s{k}.png,P{k % 4}")
    (tmp_path / "groups.csv").write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    summary = run(raw, data, "--groups", str(tmp_path / "groups.csv"), "--folds", "2",
                  "--test-frac", "0.25")
    assert summary["group_by"] == "patient" and summary["both_sides"] == 10
    rows = manifest(data)
    assert {r["group"] for r in rows} == {"P0", "P1", "P2", "P3"}
    sp = json.loads((data / "splits.json").read_text())
    check_splits(sp, {r["id"]: r["group"] for r in rows})
    assert len({r["group"] for r in rows if r["id"] in sp["test"]}) == 1


def test_same_stem_in_several_places_gets_unique_ids(tmp_path):
    rng = np.random.default_rng(4)
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    for rel in ("a.jpg", "a.png", "sub/a.jpg", "a b.jpg"):
        cv2.imwrite(str(raw / rel), dual_panel(rng, [[40, 50, 110, 120]]))
    summary = run(raw, tmp_path / "data", "--folds", "2", "--test-frac", "0")
    rows = manifest(tmp_path / "data")
    ids = [r["id"] for r in rows]
    assert summary["samples"] == 4 and len(set(ids)) == 4
    assert {r["source"] for r in rows} == {"a.jpg", "a.png", "sub/a.jpg", "a b.jpg"}
    assert all(i.isascii() and " " not in i for i in ids)


def test_the_run_owns_its_log_and_detaches_it_at_the_end(tmp_path):
    """demo.py runs the stages in one process: after prepare_data, DATA/log.txt must stop
    receiving lines, whether the run succeeded or failed."""
    rng = np.random.default_rng(3)
    raw = tmp_path / "raw"
    raw.mkdir()
    for k in range(4):
        cv2.imwrite(str(raw / f"s{k}.png"), dual_panel(rng, [[40 + 5 * k, 50, 110, 120]]))

    def file_handlers():
        return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]

    before = file_handlers()
    run(raw, tmp_path / "data", "--folds", "0", "--test-frac", "0")
    assert file_handlers() == before
    logging.getLogger("train_yolo3").info("a later stage")
    lines = (tmp_path / "data" / "log.txt").read_text().splitlines()
    assert "prepare_data run folder" in lines[0]
    assert lines[-1].endswith(f"wrote {tmp_path / 'data'}")
    assert not [ln for ln in lines if "a later stage" in ln]
    with pytest.raises(ValueError, match="is not in --classes"):
        run(raw, tmp_path / "other", "--folds", "0", "--test-frac", "0", "--classes", "cyst")
    assert file_handlers() == before and not (tmp_path / "other").exists()
