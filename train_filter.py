"""Train the second-stage filter: fused crops of detections -> ResNet18_v2 + HingeLoss.

Crops (datasets/filter/crops/) of out-of-fold (training) and test detections, split by
screenshot; models/filter_net.py trained with HingeLoss on ±1 labels; threshold chosen on
validation crops (``--threshold-rule``: keep 95 % of the lesions the detector found, or best
F1), applied unchanged to the test crops. Output: docs/CONTRACTS.md.

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

import infra.openmp  # noqa: F401  (OpenMP's defaults before mxnet loads)
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from datasets.filter import data as fd
from datasets.filter.crops import folder as crop_folder, index as crop_index
from datasets.filter.crops import fusion as crop_fusion, options as crop_options
from datasets.prepared import classes as class_names
from datasets.prepared.folder import MANIFEST, manifest_by_id
from eval import plots
from infra import runs
from models import (budget, devices, ema, filter_net, filter_threshold, optim, resume,
                    schedules)
from models.epochs import fit

log = logging.getLogger("train_filter")

# Options a resumed run must keep: they define the crops, the split or the optimisation.
_RESUME_FIXED = ("data", "detections", "test_detections", "crops", "feature", "distance",
                 "time_budget", "context", "search_radius", "stride", "min_score", "top_k",
                 "iou", "add_gt", "add_random", "add_jitter", "crop_size", "epochs", "batch_size",
                 "lr", "lr_mode", "lr_steps", "lr_factor", "lr_gamma", "min_lr", "max_lr",
                 "step_size_iters", "warmup_epochs", "warmup_lr", "momentum", "wd", "ema_decay",
                 "dropout", "margin", "val_frac", "balance", "neg_ratio", "hflip", "vflip",
                 "rotate", "brightness", "contrast", "side_gain", "threshold_rule",
                 "keep_recall", "det_threshold", "pretrained", "init_params", "seed",
                 "snapshots")


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
    crop_options.add_crop_arguments(p)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=30, help="(default: %(default)s)")
    budget.add_time_budget_argument(g, "the whole run (crops, training, scores)")
    g.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    g.add_argument("--momentum", type=float, default=0.9,
                   help="SGD momentum (default: %(default)s)")
    g.add_argument("--wd", type=float, default=1e-4,
                   help="weight decay. On the phantom 1e-3 raised the filter's best "
                        "validation AUC on one set of three demo runs' crops (0.956 against "
                        "0.940, mean of three) and lowered it on the next set (0.909 against "
                        "0.918): no gain that replicates (default: %(default)s)")
    ema.add_decay_argument(g, "filter", "on the phantom 'auto' left the validation AUC where "
                           "it was (0.81/0.90 against 0.85/0.90; with --add-random 2 0.95/0.94 "
                           "against 0.94/0.95)")
    g.add_argument("--snapshots", type=int, default=3,
                   help="the model is the mean score of this many epochs of the run, those with "
                        "the best validation AUC (a snapshot ensemble; 1: the best epoch "
                        "alone). On the phantom, 3 against 1 raised the validation AUC "
                        "measured on screenshots the epochs were not chosen on at each of six "
                        "runs (0.919 to 0.930 and 0.898 to 0.911, means of two sets of three; "
                        "docs/EXPERIMENTS.md) (default: %(default)s)")
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
    filter_net.add_model_arguments(p)
    filter_threshold.add_threshold_arguments(p)
    schedules.add_schedule_arguments(p)
    p.set_defaults(lr=0.01)
    devices.add_device_arguments(p)
    runs.add_run_arguments(p, "train_filter")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def _check_args(args):
    """Refuse what cannot run; --det-threshold defaults to the detector's model.json."""
    if not args.data:
        raise ValueError("--data DATA is required (the prepared data folder)")
    if not args.detections and not args.crops:
        raise ValueError("give --detections OOF.json (to build crops) or --crops DIR (to reuse)")
    for name in ("epochs", "batch_size", "crop_size", "snapshots"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.det_threshold is None and args.detections:
        model = Path(args.detections).parent / "model.json"
        if model.is_file():  # train_yolo3.py's operating point, as predict.py uses it
            args.det_threshold = json.loads(model.read_text(encoding="utf-8")).get(
                "score_threshold")


# ---------------------------------------------------------------- crops

def _crop_options(args):
    from datasets.filter.similar import check_pair
    search = crop_options.search_kwargs_from(args)
    # Store the resolved distance, so predict.py does not depend on today's default.
    search["distance"] = check_pair(search["feature"], search["distance"])
    return {"min_score": args.min_score, "top_k": args.top_k, "iou": args.iou,
            "add_gt": args.add_gt, "add_random": args.add_random,
            "add_jitter": args.add_jitter, "seed": args.seed,
            "size": args.crop_size, "search": search, "workers": args.crop_workers}


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
        return crop_folder.reuse_crop_folder(args.crops, _crop_options(args))
    if (own / "crops.json").exists() and (own / "train.csv").exists():
        log.info("reusing the crops in %s", own)
        return own, crop_options.read_crop_options(own)
    opts = crop_folder.build_crop_folder(args.data, args.detections, args.test_detections, own,
                                _crop_options(args))
    return own, opts


def _groups(data_dir, ids):
    group = {i: r.get("group") or r["source"] for i, r in manifest_by_id(data_dir).items()}
    unknown = sorted({i for i in ids if i not in group})
    if unknown:
        raise KeyError(f"{Path(data_dir) / MANIFEST}: no row for crop image id(s) {unknown[:5]}")
    return np.array([group[i] for i in ids])


# ---------------------------------------------------------------- training

def train_step(net, trainer, loss_fn, batch, ctxs, average=None):
    """One SGD step of the hinge loss on a batch of fused crops and ±1 labels, split over
    ``ctxs``, then the weight average's update (``average``, a ``models.ema.ModelEMA``);
    returns the summed loss (float)."""
    data = gluon.utils.split_and_load(batch[0], ctxs, even_split=False)
    label = gluon.utils.split_and_load(batch[1], ctxs, even_split=False)
    with autograd.record():
        losses = [loss_fn(net(x), y) for x, y in zip(data, label)]
    autograd.backward(losses)
    trainer.step(batch[0].shape[0])
    if average is not None:
        average.update()
    return sum(float(l.sum().asscalar()) for l in losses)


def predict_scores(net, crops, ctxs):
    """Filter scores in [-1, 1] of uint8 crops (N, S, S, 3); float64 (N,)."""
    return filter_net.score_crops(net, crops, ctxs)


def _write_scores(path, rows, idx, scores, threshold):
    crop_index.write_index(path, [dict(rows[i], filter_score=float(s), filter_keep=int(s >= threshold))
                          for i, s in zip(idx, scores)])


def evaluate(run, net, ctxs, crop_dir, rows, val_idx, val_crops, val_labels, args):
    """Pick the threshold on validation (``models.filter_threshold.choose_threshold``),
    apply it unchanged to the test crops.

    Returns the summary dict (threshold, val_* and test_* metrics, test counts).
    """
    val_scores = predict_scores(net, val_crops, ctxs)
    det_scores = filter_threshold.crop_det_scores([rows[i] for i in val_idx])
    threshold = filter_threshold.choose_threshold(val_labels, val_scores, det_scores,
                                                  args.det_threshold, args.threshold_rule,
                                                  args.keep_recall)
    _write_scores(run.path("val_scores.csv"), rows, val_idx, val_scores, threshold)
    val = filter_threshold.score_set(run, "val", val_labels, val_scores, threshold)
    summary = {"threshold": threshold, "threshold_rule": args.threshold_rule,
               "keep_recall": args.keep_recall if args.threshold_rule == "recall" else None,
               **{f"val_{k}": v for k, v in val.items() if k != "threshold"}}
    test_csv = crop_dir / "test.csv"
    if not test_csv.exists():
        log.warning("no test crops (no --test-detections): test metrics skipped")
        return summary
    test_rows = crop_index.read_index(test_csv)
    test_labels = np.array([r["label"] for r in test_rows])
    test_scores = predict_scores(net, crop_folder.load_crops(crop_dir, test_rows), ctxs)
    _write_scores(run.path("test_scores.csv"), test_rows, range(len(test_rows)), test_scores,
                  threshold)
    test = filter_threshold.score_set(run, "test", test_labels, test_scores, threshold)
    summary.update({f"test_{k}": v for k, v in test.items() if k != "threshold"})
    summary.update(filter_threshold.detector_share(test_labels))
    log.info("threshold %.4f (%s rule); test AUC %s, F1 %.3f, P %.3f, R %.3f", threshold,
             args.threshold_rule, *(test[k] for k in ("auc", "f1", "precision", "recall")))
    return summary


def plan_budget(run, args, ctxs, loader, n_epoch, n_val, crop_dir, t_start):
    """Epochs from ``--time-budget``: training and scoring rates measured on a throwaway net."""
    net = filter_net.build(False, None, args.dropout, ctxs, args.seed)
    net.hybridize()
    trainer = optim.make_trainer(net, None, args.kvstore, wd=0.0, momentum=0.0,
                                 learning_rate=1e-6)
    loss_fn = gluon.loss.HingeLoss(margin=args.margin)
    batches = [(b, b[0].shape[0]) for b, _ in zip(loader, range(6))]
    average = ema.for_run(net, args.ema_decay, 1000)  # its update is part of a step's cost
    train_rate = budget.measure_rate(lambda b: train_step(net, trainer, loss_fn, b, ctxs,
                                                          average),
                                     batches, warmup=min(2, len(batches) - 1))
    x = batches[0][0][0]
    predict_rate = budget.measure_rate(lambda b: net(b).wait_to_read(), [(x, len(x))] * 4,
                                       warmup=1)
    n_test = len(crop_index.read_index(crop_dir / "test.csv")) if (crop_dir / "test.csv").exists() else 0
    plan = budget.plan_filter(args.time_budget * 60.0 - (time.time() - t_start), n_epoch,
                              train_rate, n_val, n_test, predict_rate, args.snapshots)
    plan["minutes"] = args.time_budget
    runs.record_derived(run, {"time_budget": plan})
    return plan


def budget_replanner(run, args, plan, trainer, iters_per_epoch, t_start):
    """``fit``'s ``replan`` under ``--time-budget``: after each epoch the epochs left must end
    by the budget less the scoring after them (``models.budget.cut_to_deadline``); a cut
    rebuilds the LR schedule for the new total, so the LR still anneals by the end, and is
    recorded (``derived.time_budget.epochs_cut_to``) for a resumed run."""
    def on_cut(new):
        trainer.optimizer.lr_scheduler = schedules.build_schedule(
            **schedules.schedule_kwargs(args), iters_per_epoch=iters_per_epoch, epochs=new)
        plan["epochs_cut_to"] = new
        runs.record_derived(run, {"time_budget": plan})
    return budget.cut_to_deadline(t_start + args.time_budget * 60.0 - float(plan["after_s"]),
                                  on_cut, "the filter", plan)


def split_crops(args, crop_dir):
    """The training crops, split by source screenshot into train and validation indices.

    Validation keeps detection crops only (no --add-gt, --add-random or --add-jitter boxes):
    it mirrors the test crops because it picks the threshold. So the detection crops alone
    decide the split (stratified by their labels): the same validation set with or without
    those extras, whose crops follow their screenshot, and a screenshot without detections
    trains. When too few screenshots have detections, every crop decides it (validation may
    then be empty: the threshold falls back to the sign). Returns ``rows, crops, labels,
    train_idx, val_idx``.
    """
    rows = crop_index.read_index(crop_dir / "train.csv")
    crops = crop_folder.load_crops(crop_dir, rows)
    labels = np.array([r["label"] for r in rows])
    is_det = np.array([r.get("origin", "det") == "det" for r in rows])
    groups = _groups(args.data, [r["image_id"] for r in rows])
    decide = is_det  # the crops whose screenshots the split is stratified on
    n_det_groups, k = len(set(groups[is_det].tolist())), fd.split_count(args.val_frac)
    if n_det_groups < k:  # a detector that found (almost) nothing: validate on what is left
        log.warning("detection crops come from %d screenshot(s), fewer than the %d the "
                    "validation split needs: splitting all crops instead", n_det_groups, k)
        decide = np.ones(len(rows), bool)
    _, val = fd.group_split(labels[decide], groups[decide], args.val_frac, args.seed)
    in_val = np.isin(groups, groups[decide][val])
    return rows, crops, labels, np.flatnonzero(~in_val), np.flatnonzero(in_val & is_det)


def train_loader(args, crops, labels):
    """Augmented, resampled (``--balance``) batches of the training crops; the loader, its
    sampler (``set_epoch`` each epoch) and the iterations per epoch."""
    augment = fd.CropAugment(args.hflip, args.vflip, args.rotate, args.brightness,
                             args.contrast, args.side_gain)
    sampler = fd.EpochSampler(labels, args.seed, args.balance, args.neg_ratio)
    n_epoch = len(sampler)
    last_batch = "discard" if n_epoch >= args.batch_size else "keep"
    iters_per_epoch = max(1, n_epoch // args.batch_size if last_batch == "discard"
                          else math.ceil(n_epoch / args.batch_size))
    loader = gluon.data.DataLoader(fd.CropDataset(crops, labels, augment, args.seed),
                                   batch_size=args.batch_size, sampler=sampler,
                                   last_batch=last_batch, num_workers=args.num_workers)
    return loader, sampler, iters_per_epoch, augment


def main(args):
    t_start = time.time()
    if args.resume:
        resume.resume_options(args, build_parser(), _RESUME_FIXED)
    _check_args(args)
    classes = check_detection_classes(args)
    with runs.start("train_filter", args) as run:
        ctxs = devices.contexts(args.gpus)
        crop_dir, crop_opts = prepare_crops(args, run)
        rows, crops, labels, train_idx, val_idx = split_crops(args, crop_dir)
        train_labels, val_labels, val_crops = labels[train_idx], labels[val_idx], crops[val_idx]
        loader, sampler, iters_per_epoch, augment = train_loader(args, crops[train_idx],
                                                                 train_labels)
        counts = dict(filter_threshold.class_counts(train_labels, "train"),
                      **filter_threshold.class_counts(val_labels, "val"))
        runs.record_derived(run, {"iters_per_epoch": iters_per_epoch,
                                  "samples_per_epoch": len(sampler), "crop_dir": str(crop_dir),
                                  "crop_options": crop_opts, "counts": counts,
                                  "augment": repr(augment)})
        log.info("crops: %s; %d samples/epoch, %d iterations/epoch", counts, len(sampler),
                 iters_per_epoch)
        plan = None
        if args.time_budget is not None:
            plan = run.read_json("args.json", {}).get("derived", {}).get("time_budget") or \
                plan_budget(run, args, ctxs, loader, len(sampler), len(val_idx), crop_dir,
                            t_start)
            args.epochs = plan.get("epochs_cut_to", plan["epochs"])

        net = filter_net.build(args.pretrained, args.init_params, args.dropout, ctxs, args.seed)
        net.hybridize()
        trainer, _ = optim.scheduled_trainer(net, schedules.schedule_kwargs(args),
                                             iters_per_epoch, args.epochs, "sgd", args.wd,
                                             args.momentum, args.kvstore)
        loss_fn = gluon.loss.HingeLoss(margin=args.margin)
        average = ema.for_run(net, args.ema_decay, iters_per_epoch * args.epochs)

        def train_epoch(epoch):
            # Dropout draws from mx.random: seed it per epoch so a resumed run repeats the masks.
            mx.random.seed(args.seed * 100003 + epoch)
            sampler.set_epoch(epoch)
            t0, total, seen = time.time(), 0.0, 0
            for batch in loader:
                total += train_step(net, trainer, loss_fn, batch, ctxs, average)
                seen += batch[0].shape[0]
            if not math.isfinite(total):
                raise FloatingPointError(f"non-finite hinge loss in epoch {epoch} "
                                         f"(lr {trainer.learning_rate}); lower --lr")
            return {"train_loss": total / max(seen, 1), "lr": trainer.learning_rate,
                    "images_per_s": seen / max(time.time() - t0, 1e-9)}

        def validate(epoch):
            with ema.averaged(average):
                return filter_threshold.validation_metrics(
                    val_labels, predict_scores(net, val_crops, ctxs), args.margin)

        # The model: the mean score of the --snapshots epochs with the best validation AUC,
        # each through its weight average with --ema-decay (last.params, raw weights, when AUC
        # was undefined at every epoch: one class in validation).
        result = fit(run, net, trainer, args.epochs, train_epoch, validate, "val_auc",
                     resume=bool(args.resume), extra_state={"seed": args.seed}, ema=average,
                     keep=args.snapshots,
                     replan=None if plan is None else budget_replanner(
                         run, args, plan, trainer, iters_per_epoch, t_start))
        model = filter_net.load_members(result["members"], args.dropout, ctxs)
        summary = evaluate(run, model, ctxs, crop_dir, rows, val_idx, val_crops, val_labels,
                           args)
        summary.update(classes=classes, **counts, best_epoch=result["best_epoch"],
                       best_val_auc=result["best_metric"], epochs_run=result["epochs_run"],
                       snapshot_epochs=result["member_epochs"])
        run.write_json("filter.json", filter_net.filter_spec(
            summary["threshold"], [m.relative_to(run.dir) for m in result["members"]],
            crop_opts, args.dropout, crop_fusion.DIFFERENCE_FORM))
        plots.plot_metrics_csv(run.dir / "metrics.csv", run.path("plots", "metrics.png"))
        return run.finish(summary)


if __name__ == "__main__":
    main(parse_args())
