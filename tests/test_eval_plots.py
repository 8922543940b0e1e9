"""Every eval.plots function writes a PNG that opens, has a sensible size and is not blank."""
import csv

import matplotlib.image as mpimg
import numpy as np
import pytest

from eval import classification as C
from eval import detection as D
from eval import plots


def assert_png(path):
    img = mpimg.imread(str(path))
    assert img.ndim == 3 and img.shape[0] >= 200 and img.shape[1] >= 200, img.shape
    rgb = img[..., :3]
    assert rgb.std() > 0.02, f"{path} looks blank"
    # something besides white background and axes: more than a handful of distinct colours
    assert len(np.unique((rgb.reshape(-1, 3) * 255).astype(int), axis=0)) > 20
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")], "temp file left"


@pytest.fixture(scope="module")
def scored():
    rng = np.random.RandomState(0)
    y = np.where(rng.rand(200) < 0.4, 1, -1)
    return y, np.tanh(rng.normal(0, 1, 200) + (y > 0))


def test_pr_curves_per_class_and_runs_overlaid(tmp_path):
    rng = np.random.RandomState(1)
    gt, det = {}, {}
    for i in range(20):
        b = rng.uniform(0, 100, (3, 2))
        gb = np.c_[b, b + 20]
        gt[str(i)] = {"boxes": gb, "labels": rng.randint(0, 2, 3)}
        det[str(i)] = {"boxes": np.r_[gb + rng.normal(0, 3, gb.shape), gb + 30],
                       "scores": rng.rand(6), "labels": np.r_[gt[str(i)]["labels"]] .repeat(2)}
    res = D.evaluate(gt, det, ["lesion", "cyst"], offset=1)
    curves = plots.detection_pr_curves(res)
    assert [c["label"] for c in curves] == ["lesion", "cyst"]
    assert_png(plots.plot_pr_curves(curves, tmp_path / "per_class.png"))
    kept = {k: {kk: np.asarray(v)[d["scores"] > 0.3] for kk, v in d.items()} for k, d in det.items()}
    res2 = D.evaluate(gt, kept, ["lesion", "cyst"], offset=1)
    runs = plots.detection_pr_curves(res, prefix="detector: ") + \
        plots.detection_pr_curves(res2, prefix="two-stage: ")
    runs[0]["point"] = (0.5, 0.5)
    assert_png(plots.plot_pr_curves(runs, tmp_path / "sub" / "overlaid.png"))


def test_roc_confusion_and_sweep(tmp_path, scored):
    y, s = scored
    fpr, tpr, _ = C.roc_curve(y, s)
    assert_png(plots.plot_roc([{"label": "filter", "fpr": fpr, "tpr": tpr,
                                "auc": C.roc_auc(y, s), "point": (0.2, 0.7)}], tmp_path / "roc.png"))
    cm = C.confusion_matrix(y, C.predict(s, 0.0))
    assert_png(plots.plot_confusion_matrix(cm, tmp_path / "cm.png", labels=("reject", "keep")))
    sw = C.threshold_sweep(y, s)
    assert_png(plots.plot_threshold_sweep(sw, tmp_path / "sweep.png",
                                          chosen=C.best_f1_threshold(y, s)["threshold"]))


def test_operating_sweep_plot(tmp_path):
    rows = [{"det_threshold": t, "detector_precision": 0.5 + t / 2, "detector_recall": 0.9 - t,
             "two_stage_precision": 0.7 + t / 4, "two_stage_recall": 0.85 - t}
            for t in (0.6, 0.05, 0.3)]
    assert_png(plots.plot_operating_sweep(rows, tmp_path / "sweep.png", chosen=0.3))


def test_metrics_csv_any_numeric_columns(tmp_path):
    p = tmp_path / "metrics.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "obj_loss", "box_loss", "lr", "val_map", "seconds", "note"])
        for e in range(12):
            w.writerow([e, 5 / (e + 1), 2 / (e + 1), 1e-3 * 0.9 ** e,
                        "" if e % 3 else 0.1 * e / 12, 30 + e, "x"])
    cols = plots.read_metrics_csv(p)
    assert "note" not in cols and np.isnan(cols["val_map"][1]) and cols["val_map"][3] > 0
    assert_png(plots.plot_metrics_csv(p, tmp_path / "metrics.png", title="run"))
    q = tmp_path / "only_loss.csv"  # no epoch column, single group
    q.write_text("loss\n3\n2\n1.5\n")
    assert_png(plots.plot_metrics_csv(q, tmp_path / "only_loss.png"))


def test_lr_range_test_and_schedules(tmp_path):
    lrs = np.logspace(-6, 0, 100)
    loss = 2.5 - 1.5 * np.exp(-((np.log10(lrs) + 2.5) ** 2)) + np.where(lrs > 0.1, 10 * lrs, 0)
    assert_png(plots.plot_lr_range_test(lrs, loss, tmp_path / "lr_find.png", suggested_lr=3e-3,
                                        smoothed=loss * 0.98))
    it = np.arange(400)
    tri = 1e-4 + (1e-2 - 1e-4) * np.maximum(0, 1 - np.abs(it / 100 % 2 - 1))
    assert_png(plots.plot_lr_schedules({"triangular": tri, "triangular2": (it, tri / (1 + it // 200)),
                                        "exp_range": tri * 0.999 ** it}, tmp_path / "clr.png"))


def test_cv_plot(tmp_path):
    rng = np.random.RandomState(2)
    rows = [{"set": s, "fold": k, "params": {"lr": lr, "batch_size": 8},
             "map_voc12": float(rng.uniform(0.3, 0.7)), "map_voc07": 0.5}
            for s, lr in enumerate([1e-3, 5e-4, 1e-4]) for k in range(5)]
    rows.append({"set": 3, "fold": 0, "params": "broken", "map_voc12": None})  # skipped
    assert_png(plots.plot_cv(rows, tmp_path / "cv.png"))
