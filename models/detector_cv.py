"""The detector's cross-validation results: scores in one box convention, a job's record, the
CV tables and best set, the out-of-fold detections with their operating threshold, the
random-box baseline.

Every score here uses the VOC devkit's +1 in widths and heights (``OFFSET``), as GluonCV's
VOC metrics and the Cartucho tool do: CV, out-of-fold, test and the threshold in model.json.
The arithmetic is ``eval.cv`` and ``eval.detection``'s; this module knows train_yolo3.py's
run folder (``set<S>_fold<K>/``, ``done.json``, ``val_detections.json``). Ground truth comes
in as ``eval.detection`` dicts (``datasets.detector.data.DetectionData.ground_truth``).
"""
import logging
import shutil

import numpy as np

from eval import cv
from eval import detection as det_eval
from models import grid

log = logging.getLogger(__name__)

#: The box convention of every score train_yolo3.py writes (CV, OOF, test, model.json).
OFFSET = 1


def add_selection_arguments(parser):
    """Declare what the detector predicts and which model it hands on."""
    g = parser.add_argument_group("predictions and selection")
    g.add_argument("--score-thresh", type=float, default=0.01,
                   help="keep predicted boxes scoring at least this (default %(default)s)")
    g.add_argument("--top-k", type=int, default=100,
                   help="at most this many boxes per image (default %(default)s)")
    g.add_argument("--final-model", choices=("ensemble", "retrain"), default="ensemble",
                   help="ensemble: the best set's fold models, detections fused by weighted "
                        "box fusion (scores on the scale of the out-of-fold threshold, no "
                        "extra training); retrain: one model on every training id (default "
                        "%(default)s; --only final always retrains)")
    from models.yolo_train import FUSION_IOU  # mxnet: only train_yolo3.py declares these
    g.add_argument("--fusion-iou", type=float, default=FUSION_IOU,
                   help="IoU above which the ensemble fuses boxes; the default is the members' "
                        "own NMS IoU, so the ensemble keeps one box where each member would "
                        "(default %(default)s)")
    g.add_argument("--threshold-beta", type=float, default=2.0,
                   help="the operating threshold in model.json is the best F-beta on the "
                        "out-of-fold detections: 2 (F2) weighs recall twice, as the first "
                        "stage of a cascade should (a lesion it drops is lost, a false "
                        "positive it keeps is the filter's to remove); 1 is the best F1, for "
                        "the detector used alone (default %(default)s)")
    return g


def job_dir(run, s, k):
    """The folder of set ``s`` fold ``k``'s job."""
    return run.dir / f"set{s}_fold{k}"


def score(gt, dets, classes, per_class=False):
    """VOC12 and VOC07 mAP of ``dets`` against ``gt`` at IoU 0.5 (``OFFSET``); with
    ``per_class`` also ``ap_voc12`` ``{class: AP}`` (not per epoch: metrics.csv keeps scalar
    columns)."""
    # Images in file-name order, as the Cartucho tool reads the folders written from them:
    # equal scores (an untrained net gives many) then rank alike in both.
    gt = {i: gt[i] for i in sorted(gt)}
    res = det_eval.evaluate(gt, dets, classes, iou=0.5, offset=OFFSET)
    out = {"map_voc12": float(res["map_voc12"]), "map_voc07": float(res["map_voc07"])}
    if per_class:
        out["ap_voc12"] = {c: float(v["ap_voc12"]) for c, v in res["per_class"].items()}
    return out


def job_record(name, p, rows, diverged):
    """The part of a job's ``done.json`` its metrics.csv ``rows`` and options ``p`` give.

    The job's score is its last epoch's (added by the caller); ``best_epoch`` and
    ``best_epoch_map_voc12`` are the validation curve's best, an optimistic extra column:
    that epoch is chosen on the fold it is scored on.
    """
    validated = [float(r["map_voc12"]) for r in rows if r.get("map_voc12")]
    return {"job": name, "params": grid.set_label(getattr(p, "grid_overrides", {})),
            "epochs": p.epochs, "diverged": diverged,
            "images_per_s": float(np.mean([float(r["images_per_s"]) for r in rows]))
            if rows else 0.0,
            "best_epoch": int(np.argmax(validated)) if validated else -1,
            "best_epoch_map_voc12": max(validated) if validated else None}


def cv_tables(run, sets, results):
    """``cv_results.csv``, ``cv_summary.csv`` and ``plots/cv.png``; the best set.

    Parameters
    ----------
    sets : list of dict
        The grid's sets (their overrides).
    results : dict
        ``(set, fold) -> done.json`` record (:func:`job_record`: its ``epochs`` are the
        job's own, which a time budget may have re-planned).

    Returns
    -------
    (int, list of dict)
        The best set (highest mean VOC12 mAP) and the per-set table.

    Raises
    ------
    RuntimeError
        A fold of the best set has no model (it diverged).
    """
    rows = [{"set": s, "fold": k, "params": grid.set_label(sets[s]), **sets[s],
             "epochs": r["epochs"], "map_voc12": r["map_voc12"], "map_voc07": r["map_voc07"],
             "best_epoch": r["best_epoch"], "best_epoch_map_voc12": r.get("best_epoch_map_voc12"),
             "seconds": r["seconds"], "images_per_s": r["images_per_s"],
             "diverged": r.get("diverged") or ""}
            for (s, k), r in results.items()]
    cv.write_csv(run.path("cv_results.csv"), rows)
    table = cv.summarize(rows)
    cv.write_csv(run.path("cv_summary.csv"), table)
    best = cv.best_set(table)
    missing = [k for (s, k) in results if s == best
               and not (job_dir(run, s, k) / "val_detections.json").is_file()]
    if missing:
        raise RuntimeError(f"the best set {best} has folds {missing} without a model (they "
                           f"diverged); see cv_results.csv")
    from eval import plots
    plots.plot_cv(rows, run.path("plots", "cv.png"), metric="map_voc12")
    return best, table


def out_of_fold(run, best, n_folds, train_ids, train_gt, classes, beta=2.0):
    """Merge the best set's fold predictions into out-of-fold detections of every training
    id, write them (``oof_detections.json``, ``oof/``) and score them.

    Returns
    -------
    dict
        ``oof_map_voc12``, ``oof_ap_voc12``; ``oof_threshold``: the detector's operating
        point for predict.py and the filter, the best F-``beta`` on these detections (not on
        test data), with ``threshold_beta``; ``oof_f1_threshold``: the best F1 there, the
        detector-alone reference. The thresholds are absent when there is no detection.
    """
    oof = cv.merge_out_of_fold(
        [det_eval.read_detections_json(job_dir(run, best, k) / "val_detections.json")[0]
         for k in range(n_folds)], train_ids)
    write_predictions(run, "oof", oof, train_gt, classes)
    out = {}
    try:
        out["oof_f1_threshold"] = det_eval.best_f1_threshold(
            train_gt, oof, iou=0.5, offset=OFFSET)["score_threshold"]
        out["oof_threshold"] = det_eval.best_fbeta_threshold(
            train_gt, oof, beta, iou=0.5, offset=OFFSET)["score_threshold"]
        out["threshold_beta"] = float(beta)
    except ValueError as err:  # no OOF detection at all
        run.log.warning("no operating point on OOF detections: %s", err)
    oof_score = score(train_gt, oof, classes, per_class=True)
    out.update(oof_map_voc12=oof_score["map_voc12"], oof_ap_voc12=oof_score["ap_voc12"])
    return out


def write_predictions(run, name, dets, gt, classes):
    """``<name>_detections.json`` and the Cartucho folders ``<name>/`` (rewritten)."""
    det_eval.write_detections_json(run.path(f"{name}_detections.json"), dets, classes)
    folder = run.dir / name
    if folder.exists():  # a resumed run rewrites the Cartucho folders
        shutil.rmtree(folder)
    det_eval.write_cartucho(folder, classes, gt=gt, det=dets)


def random_baseline(train_gt, gt, image_sizes, classes, repeats=5, per_image=10):
    """Mean mAP on ``gt`` of random boxes with the training set's box sizes (chance).

    ``image_sizes``: ``id -> (width, height)`` of ``gt``'s images."""
    wh = np.concatenate([g["boxes"][:, 2:] - g["boxes"][:, :2] for g in train_gt.values()])
    maps = [score(gt, cv.random_detections(image_sizes, wh, per_image, seed=r), classes)
            for r in range(repeats)]
    return {k: float(np.mean([m[k] for m in maps])) for k in ("map_voc12", "map_voc07")}


def test_report(run, test_det, test_gt, train_gt, image_sizes, classes):
    """Write the final model's test detections (``test_detections.json``, ``test/``), score
    them and the random-box baseline; returns the summary's ``test_*`` entries."""
    write_predictions(run, "test", test_det, test_gt, classes)
    test = score(test_gt, test_det, classes, per_class=True)
    rand = random_baseline(train_gt, test_gt, image_sizes, classes)
    run.log.info("test mAP VOC12 %.4f VOC07 %.4f (random boxes: %.4f / %.4f)",
                 test["map_voc12"], test["map_voc07"], rand["map_voc12"], rand["map_voc07"])
    return {"test_map_voc12": test["map_voc12"], "test_map_voc07": test["map_voc07"],
            "test_ap_voc12": test["ap_voc12"], "test_random_map_voc12": rand["map_voc12"],
            "test_random_map_voc07": rand["map_voc07"]}
