"""Train the second-stage filter: fused crops of detections -> ResNet18_v2 + HingeLoss.

Builds fused crops (datasets/filter_crops.py) from the detector's out-of-fold detections
(training) and the final model's test detections (test), splits the training crops into
train/validation by source screenshot, trains models/filter_net.py with HingeLoss on ±1
labels, picks the score threshold with the best validation F1 and applies it unchanged to
the test crops. Output: docs/CONTRACTS.md "Filter run".

Usage:
    python train_filter.py --data DATA --detections runs/train_yolo3/X/oof_detections.json \
        --test-detections runs/train_yolo3/X/test_detections.json [--crops DIR] [--gpus 0]
    python train_filter.py --resume runs/train_filter/NAME     # continue a stopped run
"""
import argparse
import json
import logging
import math
import time
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from datasets import classes as class_names
from datasets import filter_crops as fc
from datasets import filter_data as fd
from eval import classification, plots, runs
from models import budget, devices, filter_net, optim, resume, schedules
from models.epochs import fit

log = logging.getLogger("train_filter")

# Options a resumed run must keep: they define the crops, the split or the optimisation.
_RESUME_FIXED = ("data", "detections", "test_detections", "crops", "feature", "distance",
                 "time_budget",
                 "context", "search_radius", "stride", "min_score", "top_k", "iou", "add_gt",
                 "crop_size", "epochs", "batch_size", "lr", "lr_mode", "lr_steps", "lr_factor",
                 "lr_gamma", "min_lr", "max_lr", "step_size_iters", "warmup_epochs", "warmup_lr",
                 "momentum", "wd", "dropout", "margin", "val_frac", "balance", "neg_ratio",
                 "hflip", "vflip", "rotate", "brightness", "contrast", "side_gain",
                 "threshold_rule", "keep_recall", "det_threshold",
                 "pretrained", "init_params", "seed")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None,
                   help="prepared data folder (prepare_data.py); required unless --resume")
    p.add_argument("--detections", default=None,
                   help="out-of-fold detections JSON of the training ids (train_yolo3.py)")
    p.add_argument("--test-detections", default=None,
                   help="final model's detections JSON of the test ids; without it no test "
                        "metrics are computed")
    p.add_argument("--crops", default=None,
                   help="reuse the crops built by an earlier run (its crops/ folder) instead "
                        "of building them")
    fc.add_crop_arguments(p)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=30, help="(default: %(default)s)")
    g.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="size --epochs so that the whole run (crops, training, scores) fits "
                        "this many minutes, from this machine's measured throughput; recorded "
                        "in args.json derived.time_budget (pass it as --epochs to reproduce)")
    g.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    g.add_argument("--momentum", type=float, default=0.9,
                   help="SGD momentum (default: %(default)s)")
    g.add_argument("--wd", type=float, default=1e-4, help="weight decay (default: %(default)s)")
    g.add_argument("--dropout", type=float, default=0.3,
                   help="dropout after each hidden dense layer (default: %(default)s)")
    # tanh bounds the score in (-1, 1), so with margin 1 the hinge loss never reaches 0 and
    # keeps inflating the pre-tanh activations until most scores are exactly ±1 in float32:
    # ties that erase the ranking (MXNET_TRAPS 38). On the phantom set, margin 1 left 53% of
    # the test scores at |s| > 0.9999 and gave test AUC 0.73; margin 0.5 none and 0.81.
    g.add_argument("--margin", type=float, default=0.5,
                   help="HingeLoss margin, below the tanh bound of 1 so the loss can reach 0 "
                        "(default: %(default)s)")
    g.add_argument("--threshold-rule", choices=("recall", "f1"), default="recall",
                   help="how the threshold is chosen on validation crops at the detector's "
                        "operating point: 'recall' keeps --keep-recall of the lesions, 'f1' the "
                        "best F1 (default: %(default)s)")
    g.add_argument("--keep-recall", type=float, default=0.95,
                   help="share of validation positives the 'recall' rule keeps "
                        "(default: %(default)s)")
    g.add_argument("--det-threshold", type=float, default=None,
                   help="the detector's operating threshold (default: score_threshold of the "
                        "model.json beside --detections, if any); the filter's threshold is "
                        "chosen on detections scoring at least this")
    g.add_argument("--val-frac", type=float, default=0.2,
                   help="validation fraction of the training crops, grouped by source "
                        "screenshot (default: %(default)s)")
    g.add_argument("--balance", choices=fd.BALANCE_MODES, default="none",
                   help="resample classes per epoch; 'none' keeps the test distribution, the "
                        "notes' conclusion (default: %(default)s)")
    g.add_argument("--neg-ratio", type=float, default=1.0,
                   help="negatives per positive after --balance (default: %(default)s)")
    g.add_argument("--no-hflip", dest="hflip", action="store_false",
                   help="no random horizontal flips")
    g.add_argument("--vflip", action="store_true",
                   help="random vertical flips (off: depth runs downwards in B-mode)")
    g.add_argument("--rotate", type=float, default=10.0,
                   help="largest random rotation, degrees (default: %(default)s)")
    g.add_argument("--brightness", type=float, default=0.1,
                   help="largest brightness offset, fraction of 255 (default: %(default)s)")
    g.add_argument("--contrast", type=float, default=0.1,
                   help="largest relative contrast change (default: %(default)s)")
    g.add_argument("--side-gain", type=float, default=0.0,
                   help="largest relative gain change of the reference side alone "
                        "(default: %(default)s)")
    g.add_argument("--num-workers", type=int, default=0,
                   help="DataLoader worker processes; crops are in memory, so 0 is usually "
                        "fastest on a CPU box (default: %(default)s)")
    g.add_argument("--pretrained", action="store_true",
                   help="start the features from ImageNet resnet18_v2 (needs the weights "
                        "offline: MXNET_TRAPS 41)")
    g.add_argument("--init-params", default=None,
                   help="local parameter file: a filter's params or resnet18_v2 ImageNet weights")
    schedules.add_schedule_arguments(p)
    p.set_defaults(lr=0.01)
    devices.add_device_arguments(p)
    runs.add_run_arguments(p, "train_filter")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def _check_args(args):
    if not args.data:
        raise ValueError("--data DATA is required (the prepared data folder)")
    if not args.detections and not args.crops:
        raise ValueError("give --detections OOF.json (to build crops) or --crops DIR (to reuse)")
    for name in ("epochs", "batch_size", "crop_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")


# ---------------------------------------------------------------- crops

def _crop_options(args):
    from datasets.similar import check_pair
    search = fc.search_kwargs_from(args)
    # Store the resolved distance, so predict.py does not depend on today's default.
    search["distance"] = check_pair(search["feature"], search["distance"])
    return {"min_score": args.min_score, "top_k": args.top_k, "iou": args.iou,
            "add_gt": args.add_gt, "size": args.crop_size, "search": search,
            "workers": args.crop_workers}


def check_detection_classes(args):
    """The data's classes; refuse detections made for another class list.

    The filter itself is class-agnostic (a crop is positive when it overlaps a ground-truth
    box of any class), but detections whose class ids mean other names come from a
    detector trained on other data.
    """
    classes = class_names.data_classes(args.data)
    for path in (args.detections, args.test_detections):
        if path:
            with open(path, encoding="utf-8") as f:
                found = json.load(f).get("classes")
            class_names.check_classes(classes, found, f"--data {args.data}",
                                      f"detections {path}", "use the detections of a "
                                      "detector trained on this data folder")
    return classes


def prepare_crops(args, run):
    """Build the crops into the run folder, or reuse --crops / a resumed run's crops."""
    own = run.dir / "crops"
    if args.crops:
        return fc.reuse_crop_folder(args.crops, _crop_options(args))
    if (own / "crops.json").exists() and (own / "train.csv").exists():
        log.info("reusing the crops in %s", own)
        return own, fc.read_crop_options(own)
    opts = fc.build_crop_folder(args.data, args.detections, args.test_detections, own,
                                _crop_options(args))
    return own, opts


def _groups(data_dir, ids):
    import csv
    path = Path(data_dir) / "manifest.csv"
    with open(path, newline="", encoding="utf-8") as f:
        group = {r["id"]: r.get("group") or r["source"] for r in csv.DictReader(f)}
    unknown = sorted({i for i in ids if i not in group})
    if unknown:
        raise KeyError(f"{path}: no row for crop image id(s) {unknown[:5]}")
    return np.array([group[i] for i in ids])


# ---------------------------------------------------------------- training

def _split_batch(batch, ctxs):
    data = gluon.utils.split_and_load(batch[0], ctxs, even_split=False)
    label = gluon.utils.split_and_load(batch[1], ctxs, even_split=False)
    return data, label


def predict_scores(net, crops, ctxs):
    """Filter scores in [-1, 1] of uint8 crops (N, S, S, 3); float64 (N,)."""
    return filter_net.score_crops(net, crops, ctxs)


def _auc(y, scores):
    try:
        return classification.roc_auc(y, scores)
    except ValueError:  # one class only (tiny validation part): undefined, not an error
        return float("nan")


def _best_f1(y, scores):
    try:
        return classification.best_f1_threshold(y, scores)["f1"]
    except ValueError:
        return float("nan")


def _write_scores(path, rows, idx, scores, threshold):
    out = []
    for i, s in zip(idx, scores):
        r = dict(rows[i], filter_score=float(s))
        if threshold is not None:
            r["filter_keep"] = int(s >= threshold)
        out.append(r)
    fc.write_index(path, out)


def _plots(run, name, y, scores, threshold, metrics):
    """PR, ROC, threshold sweep and confusion matrix of one scored set."""
    if (y == 1).any():
        prec, rec, _ = classification.pr_curve(y, scores)
        plots.plot_pr_curves([{"label": name, "recall": rec, "precision": prec,
                               "ap": metrics.get("average_precision"),
                               "point": (metrics["recall"], metrics["precision"])}],
                             run.path("plots", f"{name}_pr.png"), title=f"PR ({name})")
        plots.plot_threshold_sweep(classification.threshold_sweep(y, scores),
                                   run.path("plots", f"{name}_threshold.png"), chosen=threshold,
                                   title=f"Threshold sweep ({name})")
    if (y == 1).any() and (y != 1).any():
        fpr, tpr, _ = classification.roc_curve(y, scores)
        plots.plot_roc([{"label": name, "fpr": fpr, "tpr": tpr, "auc": metrics.get("auc"),
                         "point": (1 - metrics["specificity"], metrics["recall"])}],
                       run.path("plots", f"{name}_roc.png"), title=f"ROC ({name})")
    cm = classification.confusion_matrix(y, scores >= threshold)
    plots.plot_confusion_matrix(cm, run.path("plots", f"{name}_confusion.png"),
                                title=f"Confusion matrix ({name}, t={threshold:.3g})")


def choose_threshold(args, val_labels, val_scores, det_scores):
    """The filter's threshold, from validation crops only.

    The filter acts on the detections the detector keeps, so the threshold is chosen on the
    validation crops of detections scoring at least the detector's operating threshold (all
    of them without one). ``recall``: the highest threshold keeping ``--keep-recall`` of
    those positives (a screening filter should not cost lesions the detector found); ``f1``:
    the best F1 there.
    """
    sel = det_scores >= args.det_threshold if args.det_threshold is not None else \
        np.ones(len(val_labels), bool)
    y, s = val_labels[sel], val_scores[sel]
    if not (y == 1).any():
        log.warning("no positive validation crop at the operating point: threshold falls back "
                    "to 0 (sign of score)")
        return 0.0  # the hinge loss's own decision rule (MXNET_TRAPS 38)
    if args.threshold_rule == "recall":
        return classification.recall_threshold(y, s, args.keep_recall)["threshold"]
    return classification.best_f1_threshold(y, s)["threshold"]


def evaluate(run, net, ctxs, crop_dir, rows, val_idx, val_crops, val_labels, args):
    """Pick the threshold on validation (:func:`choose_threshold`), apply it unchanged to the
    test crops.

    Returns the summary dict (threshold, val_* and test_* metrics, test counts).
    """
    val_scores = predict_scores(net, val_crops, ctxs)
    det_scores = np.array([float(rows[i]["score"]) if rows[i].get("score") not in ("", None)
                           else np.inf for i in val_idx])
    threshold = choose_threshold(args, val_labels, val_scores, det_scores)
    val = classification.summarize(val_labels, val_scores, threshold)
    _write_scores(run.path("val_scores.csv"), rows, val_idx, val_scores, threshold)
    _plots(run, "val", val_labels, val_scores, threshold, val)
    summary = {"threshold": threshold,
               **{f"val_{k}": v for k, v in val.items() if k != "threshold"}}
    test_csv = crop_dir / "test.csv"
    if not test_csv.exists():
        log.warning("no test crops (no --test-detections): test metrics skipped")
        return summary
    test_rows = fc.read_index(test_csv)
    test_labels = np.array([r["label"] for r in test_rows])
    test_scores = predict_scores(net, fc.load_crops(crop_dir, test_rows), ctxs)
    _write_scores(run.path("test_scores.csv"), test_rows, range(len(test_rows)), test_scores,
                  threshold)
    test = classification.summarize(test_labels, test_scores, threshold)
    _plots(run, "test", test_labels, test_scores, threshold, test)
    summary.update({f"test_{k}": v for k, v in test.items() if k != "threshold"})
    # The detector alone keeps every crop: its crop-level precision is the positive share.
    n_pos = int((test_labels == 1).sum())
    summary.update(test_pos=n_pos, test_neg=len(test_labels) - n_pos,
                   test_detector_precision=n_pos / len(test_labels) if len(test_labels) else None)
    log.info("threshold %.4f (best validation F1 %.3f); test AUC %s, F1 %.3f, P %.3f, R %.3f",
             threshold, val["f1"], test["auc"], test["f1"], test["precision"], test["recall"])
    return summary


def plan_budget(run, args, ctxs, loader, n_epoch, n_val, crop_dir, t_start):
    """Epochs from ``--time-budget``: training and scoring rates measured on a throwaway net."""
    net = filter_net.build(False, None, args.dropout, ctxs, args.seed)
    net.hybridize()
    trainer = optim.make_trainer(net, None, args.kvstore, wd=0.0, momentum=0.0,
                                 learning_rate=1e-6)
    loss_fn = gluon.loss.HingeLoss(margin=args.margin)

    def step(batch):
        data, label = _split_batch(batch, ctxs)
        with autograd.record():
            losses = [loss_fn(net(x), y) for x, y in zip(data, label)]
        autograd.backward(losses)
        trainer.step(batch[0].shape[0])

    batches = [(b, b[0].shape[0]) for b, _ in zip(loader, range(6))]
    train_rate = budget.measure_rate(step, batches, warmup=min(2, len(batches) - 1))
    x = batches[0][0][0]
    predict_rate = budget.measure_rate(lambda b: net(b).wait_to_read(), [(x, len(x))] * 4,
                                       warmup=1)
    n_test = len(fc.read_index(crop_dir / "test.csv")) if (crop_dir / "test.csv").exists() else 0
    plan = budget.epochs_for_budget(
        args.time_budget * 60.0 - (time.time() - t_start), n_epoch, train_rate, n_val,
        predict_rate, 1, 1, after_s=(n_val + n_test) / predict_rate + 10.0)
    plan["minutes"] = args.time_budget
    runs.record_derived(run, {"time_budget": plan})
    log.info("time budget %.1f min: %d epochs (%.0f crops/s training, %.1f s per epoch)",
             args.time_budget, plan["epochs"], train_rate, plan["seconds_per_epoch"])
    return plan


def main(args):
    t_start = time.time()
    if args.resume:
        resume.resume_options(args, build_parser(), _RESUME_FIXED)
    _check_args(args)
    if args.det_threshold is None and args.detections:
        model = Path(args.detections).parent / "model.json"
        if model.is_file():  # train_yolo3.py's operating point, as predict.py uses it
            args.det_threshold = json.loads(model.read_text(encoding="utf-8")).get(
                "score_threshold")
    classes = check_detection_classes(args)
    run = runs.start("train_filter", args)
    ctxs = devices.contexts(args.gpus)
    crop_dir, crop_opts = prepare_crops(args, run)

    rows = fc.read_index(crop_dir / "train.csv")
    crops = fc.load_crops(crop_dir, rows)
    labels = np.array([r["label"] for r in rows])
    is_gt = np.array([r.get("origin") == "gt" for r in rows])
    groups = _groups(args.data, [r["image_id"] for r in rows])
    train_idx, val_idx = fd.group_split(labels, groups, args.val_frac, args.seed)
    # Validation mirrors the test crops (detections only) because it picks the threshold.
    val_idx = val_idx[~is_gt[val_idx]]
    train_labels, val_labels = labels[train_idx], labels[val_idx]
    augment = fd.CropAugment(args.hflip, args.vflip, args.rotate, args.brightness,
                             args.contrast, args.side_gain)
    train_set = fd.CropDataset(crops[train_idx], train_labels, augment, args.seed)
    sampler = fd.EpochSampler(train_labels, args.seed, args.balance, args.neg_ratio)
    n_epoch = len(sampler)
    last_batch = "discard" if n_epoch >= args.batch_size else "keep"
    iters_per_epoch = max(1, n_epoch // args.batch_size if last_batch == "discard"
                          else math.ceil(n_epoch / args.batch_size))
    loader = gluon.data.DataLoader(train_set, batch_size=args.batch_size, sampler=sampler,
                                   last_batch=last_batch, num_workers=args.num_workers)
    counts = {"train_pos": int((train_labels == 1).sum()),
              "train_neg": int((train_labels != 1).sum()),
              "val_pos": int((val_labels == 1).sum()), "val_neg": int((val_labels != 1).sum())}
    sched_kw = schedules.schedule_kwargs(args)
    runs.record_derived(run, {"iters_per_epoch": iters_per_epoch, "samples_per_epoch": n_epoch,
                              "crop_dir": str(crop_dir), "crop_options": crop_opts,
                              "counts": counts, "augment": repr(augment)})
    log.info("crops: %s; %d samples/epoch, %d iterations/epoch", counts, n_epoch,
             iters_per_epoch)

    if args.time_budget is not None:
        plan = run.read_json("args.json", {}).get("derived", {}).get("time_budget") or \
            plan_budget(run, args, ctxs, loader, n_epoch, len(val_idx), crop_dir, t_start)
        args.epochs = plan["epochs"]
    net = filter_net.build(args.pretrained, args.init_params, args.dropout, ctxs, args.seed)
    net.hybridize()
    trainer, _ = optim.scheduled_trainer(net, sched_kw, iters_per_epoch, args.epochs, "sgd",
                                         args.wd, args.momentum, args.kvstore)
    loss_fn = gluon.loss.HingeLoss(margin=args.margin)
    val_crops = crops[val_idx]

    def train_epoch(epoch):
        # Dropout draws from mx.random: seed it per epoch so a resumed run repeats the masks.
        mx.random.seed(args.seed * 100003 + epoch)
        sampler.set_epoch(epoch)
        t0, total, seen = time.time(), 0.0, 0
        for batch in loader:
            data, label = _split_batch(batch, ctxs)
            with autograd.record():
                losses = [loss_fn(net(x), y) for x, y in zip(data, label)]
            autograd.backward(losses)
            trainer.step(batch[0].shape[0])
            total += sum(float(l.sum().asscalar()) for l in losses)
            seen += batch[0].shape[0]
        if not math.isfinite(total):
            raise FloatingPointError(f"non-finite hinge loss in epoch {epoch} "
                                     f"(lr {trainer.learning_rate}); lower --lr")
        return {"train_loss": total / max(seen, 1), "lr": trainer.learning_rate,
                "images_per_s": seen / max(time.time() - t0, 1e-9)}

    def validate(epoch):
        scores = predict_scores(net, val_crops, ctxs)
        y = val_labels
        loss = float(np.maximum(0.0, args.margin - y * scores).mean()) if len(y) else float("nan")
        return {"val_loss": loss, "val_auc": _auc(y, scores), "val_f1": _best_f1(y, scores)}

    result = fit(run, net, trainer, args.epochs, train_epoch, validate, "val_auc",
                 resume=bool(args.resume), extra_state={"seed": args.seed})
    best = run.dir / "checkpoints" / "best.params"
    if not best.exists():  # the metric was undefined every epoch (one class in validation)
        best = run.dir / "checkpoints" / "last.params"
    net.load_parameters(str(best), ctx=ctxs)
    summary = evaluate(run, net, ctxs, crop_dir, rows, val_idx, val_crops, val_labels, args)
    summary["classes"] = classes
    summary.update(counts)
    summary.update(best_epoch=result["best_epoch"], best_val_auc=result["best_metric"],
                   epochs_run=result["epochs_run"])
    filter_spec = {"threshold": summary["threshold"], "params": str(best.relative_to(run.dir)),
                   "crop_size": crop_opts["size"], **crop_opts["search"],
                   "min_score": crop_opts["min_score"], "top_k": crop_opts["top_k"],
                   "iou": crop_opts["iou"], "difference": fc.DIFFERENCE_FORM,
                   "net": {"backbone": "resnet18_v2", "dropout": args.dropout,
                           "mean": filter_net.IMAGENET_MEAN, "std": filter_net.IMAGENET_STD},
                   "score_range": [-1, 1]}
    run.write_json("filter.json", filter_spec)
    plots.plot_metrics_csv(run.dir / "metrics.csv", run.path("plots", "metrics.png"))
    return run.finish(summary)


if __name__ == "__main__":
    main(parse_args())
