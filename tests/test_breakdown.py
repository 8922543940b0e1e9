"""eval/breakdown.py against a per-box loop; datasets/prepared/lesion_contrast.py on drawn
lesions."""
import numpy as np
import pytest

from datasets.prepared.lesion_contrast import box_contrast, ellipse_mask
from eval.breakdown import found_boxes, recall_by_bins


def _iou(a, b, offset):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + offset
    ih = min(a[3], b[3]) - max(a[1], b[1]) + offset
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = lambda r: (r[2] - r[0] + offset) * (r[3] - r[1] + offset)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.parametrize("seed", range(10))
def test_found_boxes_equals_the_loop(seed):
    rng = np.random.RandomState(seed)
    gt, det = {}, {}
    for i in range(6):
        n, m = rng.randint(0, 5), rng.randint(0, 8)
        xy = rng.uniform(0, 80, (n, 2))
        gt[i] = {"boxes": np.c_[xy, xy + rng.uniform(5, 30, (n, 2))],
                 "labels": rng.randint(0, 2, n)}
        src = gt[i]["boxes"][rng.randint(0, max(n, 1), m)] if n else rng.uniform(0, 80, (m, 4))
        boxes = np.sort(src.reshape(m, 2, 2) + rng.normal(0, 3, (m, 2, 2)), axis=1).reshape(m, 4)
        det[i] = {"boxes": boxes, "scores": rng.uniform(0, 1, m), "labels": rng.randint(0, 2, m)}
    for offset in (0, 1):
        got = found_boxes(gt, det, 0.4, 0.5, offset=offset)
        for i in gt:
            want = [any(s >= 0.4 and lab == gl and _iou(gb, db, offset) >= 0.5
                        for db, s, lab in zip(det[i]["boxes"], det[i]["scores"],
                                              det[i]["labels"]))
                    for gb, gl in zip(gt[i]["boxes"], gt[i]["labels"])]
            assert got[i].tolist() == want, (seed, offset, i)


def test_recall_by_bins_counts_each_box_once():
    found = {"a": np.array([True, False, True, True]), "b": np.array([False, True])}
    values = {"a": np.array([0.1, 0.25, 0.9, np.nan]), "b": np.array([1.0, -3.0])}
    rows = recall_by_bins(found, values, [0.0, 0.2, 0.5, 1.0])
    # outer bins open (-3.0 in the first, 1.0 in the last), nan not counted
    assert [(r["n"], r["found"]) for r in rows] == [(2, 2), (1, 0), (2, 1)]
    assert rows[2]["recall"] == 0.5
    rows = recall_by_bins(found, values, [0.0, 0.2, 0.5, 1.0],
                          difficult={"a": np.array([True, False, False, False]),
                                     "b": np.array([False, True])})
    assert rows[0]["n"] == 0 and rows[0]["recall"] is None


def test_contrast_of_a_drawn_ellipse():
    rng = np.random.RandomState(0)
    ref = rng.uniform(100, 140, (60, 80))
    half = ref.copy()
    box = [20, 10, 50, 40]
    half[ellipse_mask(box, half.shape)] *= 0.6  # a lesion at 60 % of the muscle's grey
    assert box_contrast(half, ref, box) == pytest.approx(0.4, abs=1e-9)
    assert box_contrast(ref, ref, box) == pytest.approx(0.0, abs=1e-12)
    # a reference a few pixels smaller is read over the common area
    assert box_contrast(half, ref[:58, :77], box) == pytest.approx(0.4, abs=1e-9)
