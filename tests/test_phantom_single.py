"""The single-panel phantom (``python -m datasets.phantom --single-panel``): layout and sizes,
labelme polygons that prepare_data.py --no-crop --no-split turns back into every truth box,
same seed same bytes, lesions as large as in the dual-panel halves.

The references are independent of the generator: the image files as OpenCV reads them, the
bounding box of the labelme points computed here, and the boxes prepare_data.py writes to VOC.
"""
import json

import cv2
import numpy as np
import pytest

import prepare_data
from datasets.phantom import generator as phantom
from datasets.phantom.scene import SINGLE_HEIGHTS, SINGLE_WIDTHS
from datasets.prepared.folder import read_manifest
from datasets.prepared.recovery import recovery

SEED = 5
NUM = 8


@pytest.fixture(scope="module")
def single_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    summary = phantom.generate(out, NUM, seed=SEED, progress=False, single_panel=True)
    truth = json.loads((out / "truth.json").read_text())
    return out, summary, truth


def test_one_panel_filling_a_landscape_picture(single_set):
    out, summary, truth = single_set
    assert summary["single_panel"] and summary["n_red"] == 0 and summary["n_labelme"] == NUM
    assert truth["classes"] == ["lesion"]
    for r in truth["images"]:
        img = cv2.imread(str(out / r["file"]), cv2.IMREAD_UNCHANGED)
        h, w = img.shape[:2]
        assert (w, h) == (r["width"], r["height"]) and img.ndim == 3, r["file"]
        assert SINGLE_WIDTHS[0] <= w <= SINGLE_WIDTHS[1], (r["file"], w)
        assert SINGLE_HEIGHTS[0] <= h <= SINGLE_HEIGHTS[1], (r["file"], h)
        assert w > h, f"{r['file']}: want landscape, got {w}x{h}"
        assert r["panels"] == {"full": [0.0, 0.0, float(w), float(h)]}
        assert r["annotation"] == "labelme" and r["file"].endswith((".png", ".jpg"))
        assert r["boxes"], f"seed {SEED}: {r['file']} has no lesion"
        # no black border and no scanner text: every edge row and column is tissue (the
        # display floor is >= 27 grey levels; the border crop looks for <= 20)
        grey = img[:, :, 0].astype(float)
        edges = [grey[0], grey[-1], grey[:, 0], grey[:, -1]]
        assert min(e.mean() for e in edges) > 25, r["file"]
        assert np.percentile(grey, 1) > 20, r["file"]
        for b in r["boxes"] + r["lookalikes"]:
            x1, y1, x2, y2 = b["box"]
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, (r["file"], b)
        assert {b["side"] for b in r["boxes"]} == {"full"}


def test_labelme_polygons_match_truth(single_set):
    out, _, truth = single_set
    for r in truth["images"]:
        doc = json.loads((out / r["labelme"]).read_text(encoding="utf-8"))
        assert doc["imagePath"] == r["file"] and doc["imageData"] is None
        assert (doc["imageWidth"], doc["imageHeight"]) == (r["width"], r["height"])
        assert [s["shape_type"] for s in doc["shapes"]] == ["polygon"] * len(r["boxes"])
        assert {s["label"] for s in doc["shapes"]} == {"lesion"}
        for s, b in zip(doc["shapes"], r["boxes"]):
            pts = np.array(s["points"])
            assert len(pts) >= 3
            by_hand = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
            np.testing.assert_allclose(by_hand, b["box"], atol=1e-9)


def test_prepare_no_crop_no_split_recovers_every_box(single_set, tmp_path):
    raw, _, truth = single_set
    data = tmp_path / "data"
    summary = prepare_data.main(prepare_data.parse_args(
        ["--raw", str(raw), "--out", str(data), "--no-crop", "--no-split", "--folds", "2",
         "--test-frac", "0.25", "--no-progress"]))
    rec = recovery(raw, data, iou_min=0.9)
    assert rec["rate"] == 1.0, rec["misses"][:5]
    assert rec["extra"] == 0 and rec["n_truth"] == summary["boxes"]
    assert summary["samples"] == NUM and summary["test"] == 2
    sizes = {r["labelme"]: (r["width"], r["height"]) for r in truth["images"]}
    for row in read_manifest(data):
        assert row["side"] == "full" and (row["x_offset"], row["y_offset"]) == ("0", "0")
        assert (int(row["width"]), int(row["height"])) == sizes[row["source"]], row


def test_same_seed_same_bytes(single_set, tmp_path):
    out, _, truth = single_set
    phantom.generate(tmp_path / "again", NUM, seed=SEED, progress=False, single_panel=True)
    for p in sorted(out.iterdir()):
        assert (tmp_path / "again" / p.name).read_bytes() == p.read_bytes(), \
            f"seed {SEED}: {p.name} differs"
    phantom.generate(tmp_path / "other", 2, seed=SEED + 1, progress=False, single_panel=True)
    other = json.loads((tmp_path / "other" / "truth.json").read_text())
    assert other["images"] != truth["images"][:2]


def test_lesions_as_large_as_in_dual_panel_halves():
    """Not easier than the dual-panel set: lesion boxes of the same pixel size (median within
    20 %), and no larger a share of the picture's area."""
    def boxes(single):
        wh, share = [], []
        for i in range(12):
            _, rec, _ = phantom.make_example(11, i, single_panel=single)
            for b in rec["boxes"]:
                side = rec["panels"][b["side"]]
                area = (side[2] - side[0]) * (side[3] - side[1])
                bw, bh = b["box"][2] - b["box"][0], b["box"][3] - b["box"][1]
                wh.append(np.sqrt(bw * bh))
                share.append(bw * bh / area)
        return np.median(wh), np.median(share)

    (single_px, single_share), (dual_px, dual_share) = boxes(True), boxes(False)
    assert 0.8 < single_px / dual_px < 1.2, (single_px, dual_px)
    assert single_share < 1.2 * dual_share, (single_share, dual_share)


def test_cli_single_panel_and_refused_options(tmp_path):
    args = phantom.parse_args(["--out", str(tmp_path), "--num", "1", "--single-panel",
                               "--sizes", "560x470", "--no-progress"])
    phantom.main(args)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert (truth["images"][0]["width"], truth["images"][0]["height"]) == (560, 470)
    with pytest.raises(SystemExit):
        phantom.parse_args(["--out", str(tmp_path), "--single-panel", "--labelme-frac", "1"])
    with pytest.raises(ValueError, match="too small"):
        phantom.generate(tmp_path, 1, sizes=[(150, 120)], single_panel=True, progress=False)
