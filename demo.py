"""The main job: phantom screenshots -> prepare -> detector CV -> filter -> two-stage report.

    python demo.py                      # CPU defaults, about 15 minutes on 2 cores
    python demo.py --full --gpus 0      # the paper's settings on a CUDA box

Every stage is the same script a user runs by hand, called in-process (``main(parse_args
([...]))``), each writing its own run folder inside this one:

    runs/demo/<name>/raw/            phantom screenshots + truth.json  (datasets.phantom)
    runs/demo/<name>/data/           halves, VOC, manifest, splits, records  (prepare_data.py)
    runs/demo/<name>/detector/       CV over the grid, final model, OOF + test detections
    runs/demo/<name>/filter/         fused crops, filter net, threshold, test scores
    runs/demo/<name>/report.md       detector alone vs detector + filter, CV table, plots
    runs/demo/<name>/summary.json
    runs/demo/<name>/log.txt         every stage's lines: the demo's run encloses the others

Each stage's own ``log.txt`` (``data/``, ``detector/``, ``filter/``) holds only that stage's
lines: a run detaches its log when it ends (``infra.runs.Run``).

The detector's operating threshold is its best-F2 score on the out-of-fold detections (the
first stage of a cascade favours recall; the report adds the detector alone at its best-F1
threshold, the single-stage reference) and the filter's threshold is chosen on validation
crops (by default the highest keeping 95 % of the lesions the detector found there): none
looks at the test split.
"""
import time

# before the imports below (mxnet, gluoncv, OpenCV: seconds), which the budget counts
SCRIPT_STARTED = time.time()

import argparse  # noqa: E402
import csv  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import prepare_data  # noqa: E402
import train_filter  # noqa: E402
import train_yolo3  # noqa: E402
from datasets.phantom import generator as phantom  # noqa: E402
from datasets.prepared import classes as class_names  # noqa: E402
from datasets.prepared.folder import manifest_by_id, read_splits  # noqa: E402
from eval import acceptance, bootstrap, detection, plots, report, two_stage  # noqa: E402
from infra import process_clock, runs  # noqa: E402
from models import filter_threshold  # noqa: E402

log = logging.getLogger("demo")

# Settings per profile. "cpu" fits a 15-minute budget on a 2-core AVX2-only CPU: one set of
# the CPU recipe, five fold models sized to the time left (train_yolo3.py --time-budget), their
# ensemble as the final model, then the filter sized to what remains. "full" is the paper's
# recipe for a CUDA box (fixed epochs, a grid); "tiny" only proves that the chain runs.
# Entries set to None are left to the scripts' own defaults (the recipe).
PROFILES = {
    "cpu": dict(num=280, folds=5, test_frac=0.2, network="yolo3_mobilenet0.25_custom",
                data_shape=None, batch_size=None, grid=None, epochs=None, minutes=15.0,
                detector_share=0.72, val_interval=5, pretrained=False, filter_epochs=None,
                filter_batch=32, num_workers=None, add_gt=True, crop_size=64, filter_top_k=10),
    "full": dict(num=600, folds=5, test_frac=0.2, network="yolo3_darknet53_custom",
                 data_shape=416, batch_size=16, grid="lr=1e-3,5e-4;epochs=60,100;lr_mode=cosine,triangular",
                 epochs=None, minutes=None, detector_share=None, val_interval=5,
                 pretrained=True, filter_epochs=40, filter_batch=64, num_workers=4,
                 add_gt=False, crop_size=128, filter_top_k=20),
    "tiny": dict(num=14, folds=2, test_frac=0.25, network="yolo3_mobilenet0.25_custom",
                 data_shape=96, batch_size=4, grid="lr=1e-3,2e-3", epochs=1, minutes=None,
                 detector_share=None, val_interval=1, pretrained=False, filter_epochs=1,
                 filter_batch=8, num_workers=0, add_gt=True, crop_size=32, filter_top_k=5),
}
#: Seconds kept for the two-stage evaluation and the report after the filter.
REPORT_RESERVE_S = 20.0
#: Seconds the plan leaves unspent: the budget is also the README's wall-time line, and the
#: filter's last epochs can run slower than planned (13 to 22 s within one run), so the
#: demo aims to end this much before the budget rather than on it.
END_SLACK_S = 20.0
#: The filter's time when the detector left it less: a run over its budget still ends with
#: a filter and a report (a slowed-down machine once left the filter -0.4 min, and the run
#: ended in an error after 15 minutes), and says by how much it overran.
FILTER_FLOOR_MINUTES = 2.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true",
                   help="paper settings (darknet53, 416 px, 60/100 epochs, ImageNet backbone, "
                        "600 screenshots) for a CUDA box")
    p.add_argument("--tiny", action="store_true",
                   help="minutes-long smoke run of the whole chain (what the CI test runs)")
    p.add_argument("--num", type=int, default=None,
                   help="phantom screenshots to generate (default: the profile's)")
    p.add_argument("--raw", default=None,
                   help="use this raw folder (screenshots + labelme JSON) instead of a phantom")
    p.add_argument("--grid", default=None, help="detector grid (default: the profile's)")
    p.add_argument("--network", default=None, help="detector network (default: the profile's)")
    p.add_argument("--data-shape", type=int, default=None,
                   help="detector input size (default: the profile's)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="wall-clock budget of the whole demo: the detector and the filter get "
                        "epochs sized to what is left (default: the profile's, 15 for the CPU "
                        "profile; 0 = the profile's fixed epochs)")
    p.add_argument("--gpus", default="", help="GPU ids, '' for CPU (default: CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    runs.add_run_arguments(p, "demo")
    return p.parse_args(argv)


def profile(args):
    if args.full and args.tiny:
        raise ValueError("--full and --tiny are exclusive")
    cfg = dict(PROFILES["full" if args.full else "tiny" if args.tiny else "cpu"])
    for key in ("num", "grid", "network", "data_shape"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.time_budget is not None:
        cfg["minutes"] = args.time_budget or None
        cfg["detector_share"] = cfg["detector_share"] or PROFILES["cpu"]["detector_share"]
    if cfg["minutes"] and cfg["epochs"] is None and cfg["filter_epochs"] is None:
        return cfg
    if cfg["minutes"]:
        raise ValueError("--time-budget sizes the epochs: the profile fixes them")
    cfg["epochs"] = cfg["epochs"] or 30
    cfg["filter_epochs"] = cfg["filter_epochs"] or 8
    return cfg


def filter_budget_minutes(left_s):
    """The filter's ``--time-budget``: the ``left_s`` seconds the detector left, at least
    :data:`FILTER_FLOOR_MINUTES` (with a warning that the demo overruns)."""
    if left_s >= FILTER_FLOOR_MINUTES * 60.0:
        return left_s / 60.0
    log.warning("the detector left the filter %.1f min of the budget: the filter gets %.1f "
                "min, and the demo overruns its budget", left_s / 60.0, FILTER_FLOOR_MINUTES)
    return FILTER_FLOOR_MINUTES


def _options(**values):
    """argv for the options whose value is not None (flags: True -> present)."""
    argv = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (None, False):
            argv += [flag, str(value)]
    return argv


def _progress(args):
    return ["--progress", "off"] if args.no_progress else []


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


#: Detector thresholds of the sweep in the report (plus the operating one); those below the
#: filter's --min-score are left out (the filter never scored such detections).
SWEEP_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)


def evaluate_two_stage(data_dir, det_dir, filter_dir, classes, plots_dir, rule="recall",
                       keep_recall=0.95, f1_threshold=None, seed=0):
    """Detector alone vs detector + filter on the test split (thresholds fixed beforehand),
    at the operating point and swept over detector thresholds (the filter's threshold at
    each chosen by its ``rule`` on validation crops); with ``f1_threshold`` (the best F1 on
    out-of-fold detections), also the detector alone there: the single-stage reference the
    two-stage pipeline has to beat. ``intervals``: how far the test numbers move when the
    test groups are resampled (eval.bootstrap, resampling seed ``seed``)."""
    import json
    splits = read_splits(data_dir)
    ann = Path(data_dir) / "Annotations"
    gt_test = detection.read_voc_dir(ann, classes, ids=splits["test"])[0]
    det_test, _ = detection.read_detections_json(Path(det_dir) / "test_detections.json")
    # The detector's operating point and box convention, as predict.py uses them: model.json
    # (best F2 on out-of-fold detections, never the test split).
    with open(Path(det_dir) / "model.json", encoding="utf-8") as f:
        model = json.load(f)
    det_threshold, offset = model["score_threshold"], model["offset"]
    with open(Path(filter_dir) / "filter.json", encoding="utf-8") as f:
        filter_spec = json.load(f)
    test_rows = _read_csv(Path(filter_dir) / "test_scores.csv")
    scores = two_stage.attach_filter_scores(det_test, test_rows)
    out = two_stage.compare(gt_test, det_test, scores, filter_spec["threshold"], det_threshold,
                            classes, offset=offset)
    group_of = {i: row["group"] for i, row in manifest_by_id(data_dir).items()}
    test_set = bootstrap.TestSet(gt_test, det_test, out["two_stage_detections"], det_threshold,
                                 len(classes), offset=offset, group_of=group_of, crops=test_rows)
    out["intervals"] = None
    if test_set.n_groups >= 2:
        out["intervals"] = bootstrap.intervals(test_set, seed=seed)
        log.info("\n".join(bootstrap.format_lines(out["intervals"], set(bootstrap.PAIRED_METRICS)
                                                   | {"detector_map_voc12", "filter_auc"})))
    else:
        log.warning("%d test group(s): no bootstrap intervals", test_set.n_groups)
    pr_png = plots.plot_pr_curves(out["curves"], Path(plots_dir) / "pr_two_stage.png",
                                  title="Test split: detector alone vs detector + filter")
    out["detector"]["score_threshold"] = float(det_threshold)
    if f1_threshold is not None:
        out["detector_best_f1"] = detection.operating_point(gt_test, det_test, f1_threshold,
                                                            offset=offset)
    out["plots"] = {"pr_two_stage": str(pr_png)}
    out["n_test_images"] = len(gt_test)
    out["recall_by"] = recall_breakdown(data_dir, gt_test, det_test,
                                        out["two_stage_detections"], det_threshold, offset)
    grid = sorted({float(det_threshold)} | {t for t in SWEEP_THRESHOLDS
                                            if t >= filter_spec.get("min_score", 0.0)})
    pairs = filter_threshold.sweep_pairs(_read_csv(Path(filter_dir) / "val_scores.csv"), grid,
                                         rule, keep_recall)
    out["sweep"] = two_stage.operating_sweep(gt_test, det_test, scores, pairs, offset=offset)
    out["plots"]["operating_sweep"] = str(plots.plot_operating_sweep(
        out["sweep"], Path(plots_dir) / "operating_sweep.png", chosen=float(det_threshold)))
    return out


#: Bins of the recall breakdown: lesion contrast against the contralateral place (0 =
#: invisible) and size (square root of the box area, half pixels).
CONTRAST_EDGES = (-1.0, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0)
SIZE_EDGES = (0.0, 24.0, 32.0, 40.0, 48.0, 64.0, 1000.0)


def recall_breakdown(data_dir, gt, det, kept, det_threshold, offset):
    """Recall at the operating point by lesion contrast and size, detector alone and with
    the filter: which lesions a detector of this budget misses."""
    from datasets.prepared.lesion_contrast import data_contrasts
    from eval.breakdown import found_boxes, recall_by_bins
    values = {"contrast": (data_contrasts(data_dir, gt), CONTRAST_EDGES),
              "size": ({i: np.sqrt(np.prod(g["boxes"][:, 2:] - g["boxes"][:, :2], axis=1))
                        for i, g in gt.items()}, SIZE_EDGES)}
    difficult = {i: g["difficult"] for i, g in gt.items()}
    found = {"detector": found_boxes(gt, det, det_threshold, offset=offset),
             "two_stage": found_boxes(gt, kept, det_threshold, offset=offset)}
    return {attr: {stage: recall_by_bins(f, v, edges, difficult) for stage, f in found.items()}
            for attr, (v, edges) in values.items()}


def command_started_at():
    """When ``python demo.py`` started: the process's start (imports included), but no
    earlier than an interpreter's start can be before this module's first line."""
    return process_clock.started_at(
        not_before=SCRIPT_STARTED - process_clock.MAX_INTERPRETER_START_S)


def main(args, started_at=None):
    """``started_at``: the ``time.time()`` the clock of the budget and of ``elapsed_s`` starts
    from; the command line passes the process's start (``infra.process_clock``), so both
    count the imports a user's ``time python demo.py`` counts; default: now."""
    t0 = time.time() if started_at is None else float(started_at)
    startup_s = time.time() - t0
    cfg = profile(args)
    with runs.start("demo", args, derived={"profile": cfg}) as run:
        summary = run_stages(run, args, cfg, t0)
        summary["budget"]["startup_s"] = round(startup_s, 2)
        # the README's lines, with the CPU they ran on: a run elsewhere carries its own verdict
        summary["acceptance"] = acceptance.judge(summary, run.read_json("env.json", {}))
        run.finish(summary)
    report.write_report(run.dir, summary, title="Two-stage strain detection: demo on phantoms")
    table = report.format_summary_table(summary)
    print(table, flush=True)
    print(acceptance.format_judged(summary["acceptance"], label="the README's lines"),
          flush=True)
    return summary


def run_stages(run, args, cfg, t0):
    """Phantom, prepare, detector, filter and the two-stage evaluation inside the demo's run
    folder; returns the summary. Each stage is a run of its own (its own log.txt); the
    demo's log.txt encloses them all."""
    seed = str(args.seed)
    data_dir = run.dir / "data"
    if args.raw:
        raw_dir = Path(args.raw)
        phantom_version = None
    else:
        raw_dir = run.dir / "raw"
        phantom_version = phantom.generate(raw_dir, cfg["num"], seed=args.seed,
                                           progress=not args.no_progress)["phantom_version"]
    prep = prepare_data.main(prepare_data.parse_args(
        ["--raw", str(raw_dir), "--out", str(data_dir), "--folds", str(cfg["folds"]),
         "--test-frac", str(cfg["test_frac"]), "--seed", seed]
        + (["--no-progress"] if args.no_progress else [])))
    budget_s = cfg["minutes"] * 60.0 if cfg["minutes"] else None

    def left_s():
        return budget_s - (time.time() - t0) - REPORT_RESERVE_S - END_SLACK_S

    det_minutes = None
    if budget_s is not None:
        det_minutes = cfg["detector_share"] * left_s() / 60.0
        log.info("time budget %.1f min: %.1f min left, %.1f min for the detector",
                 cfg["minutes"], left_s() / 60.0, det_minutes)
    det_argv = _options(data=data_dir, network=cfg["network"], data_shape=cfg["data_shape"],
                        batch_size=cfg["batch_size"], grid=cfg["grid"], epochs=cfg["epochs"],
                        time_budget=det_minutes, val_interval=cfg["val_interval"],
                        num_workers=cfg["num_workers"], pretrained_base=cfg["pretrained"],
                        out=run.dir, name="detector", seed=seed) + ["--gpus", args.gpus]
    det = train_yolo3.main(train_yolo3.parse_args(det_argv + _progress(args)))
    det_dir = run.dir / "detector"
    if det.get("oof_threshold") is None:
        # without an operating point there is no two-stage pipeline to judge: stop before
        # the filter spends the rest of the budget (the detector's run folder stays)
        raise SystemExit(
            f"demo: the detector has no operating point: its fold models found no lesion out "
            f"of fold ({det.get('epochs')} epoch(s) a fold), so {det_dir / 'model.json'} has "
            f"no score_threshold. It has not learned yet: give it more minutes "
            f"(--time-budget) or epochs.")
    filter_minutes = filter_budget_minutes(left_s()) if budget_s is not None else None
    # A detector trained for minutes on a CPU finds few lesions, so its out-of-fold boxes
    # hold few positives; the CPU profiles add the ground-truth boxes as extra positives.
    # train_filter.py's own default adds random boxes (--add-random), mostly negatives.
    filt_argv = _options(data=data_dir, detections=det_dir / "oof_detections.json",
                         test_detections=det_dir / "test_detections.json",
                         epochs=cfg["filter_epochs"], time_budget=filter_minutes,
                         batch_size=cfg["filter_batch"], crop_size=cfg["crop_size"],
                         top_k=cfg["filter_top_k"], pretrained=cfg["pretrained"],
                         add_gt=cfg["add_gt"], out=run.dir, name="filter",
                         seed=seed) + ["--gpus", args.gpus]
    filt = train_filter.main(train_filter.parse_args(filt_argv))
    classes = class_names.data_classes(data_dir)
    e2e = evaluate_two_stage(data_dir, det_dir, run.dir / "filter", classes, run.dir / "plots",
                             filt.get("threshold_rule") or "recall", filt.get("keep_recall"),
                             det.get("oof_f1_threshold"), args.seed)

    return {
        "profile": cfg,
        "data": dict({k: prep.get(k) for k in ("sources", "samples", "boxes", "skipped_files",
                                               "both_sides", "test", "train", "folds")},
                     phantom_version=phantom_version),
        "detector": dict(e2e["detector"], **{k: det.get(k) for k in (
            "cv_map_mean", "cv_map_std", "best_set", "oof_map_voc12", "test_random_map_voc12",
            "final_model", "epochs", "fold_epochs")}),
        "two_stage": e2e["two_stage"],
        "detector_best_f1": e2e.get("detector_best_f1"),
        "recall_by": e2e["recall_by"],
        "two_stage_sweep": e2e["sweep"],
        "intervals": e2e["intervals"],
        "budget": {"minutes": cfg["minutes"], "reserve_s": REPORT_RESERVE_S,
                   "slack_s": END_SLACK_S, "detector_minutes": det_minutes,
                   "detector_epochs": det.get("epochs"), "filter_minutes": filter_minutes,
                   "filter_epochs": filt.get("epochs_run")},
        "filter": {"test_auc": filt.get("test_auc"), "test_f1": filt.get("test_f1"),
                   "threshold": filt.get("threshold"),
                   "threshold_rule": filt.get("threshold_rule"),
                   "keep_recall": filt.get("keep_recall"), "val_auc": filt.get("val_auc"),
                   **{f"n_{k}": v for k, v in filt.items()
                      if k in ("train_pos", "train_neg", "test_pos", "test_neg")}},
        "cv": _read_csv(det_dir / "cv_results.csv") if (det_dir / "cv_results.csv").exists() else [],
        "cv_summary": det.get("cv_table", []),
        "plots": _collect_plots(run.dir, e2e["plots"]),
        "elapsed_s": round(time.time() - t0, 1),
    }


def _collect_plots(run_dir, extra):
    """Plots of the nested runs, relative to the demo folder, for the report."""
    found = {}
    for png in sorted(Path(run_dir).glob("*/plots/*.png")) + sorted(Path(run_dir).glob("*/*.png")):
        rel = png.relative_to(run_dir)
        found[str(rel.with_suffix("")).replace("/", "_")] = str(rel)
    for k, v in extra.items():
        found[k] = str(Path(v).resolve().relative_to(Path(run_dir).resolve()))
    return found


if __name__ == "__main__":
    main(parse_args(), started_at=command_started_at())
