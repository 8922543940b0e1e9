"""Train the YOLOv3 detector: k-fold cross-validation over a hyper-parameter grid, then the
final model of the best set, scored once on the test split.

Every set x fold model trains for the set's epochs (or what ``--time-budget`` buys) and is
scored at its last epoch, with its weight average (EMA), on its validation fold: no epoch is
chosen on the fold that reports it. The validation curve (and its best epoch, an optimistic
extra column) is still recorded. The fold models predict their validation ids, so together
they give out-of-fold detections for the whole training set; the detector's operating
threshold is the best F1 on them. The final model (``--final-model``) is the ensemble of the
best set's fold models (their detections fused by weighted box fusion: scores stay on the
scale the threshold was chosen on, and nothing is retrained) or one model retrained on every
training id. Boxes are scored with the VOC devkit's convention (offset 1) everywhere.
Artefacts: docs/CONTRACTS.md.

    python train_yolo3.py --data DATA --grid "lr=1e-3,5e-4;epochs=30,60" --gpus 0
    python train_yolo3.py --data DATA --time-budget 30          # CPU: sized to 30 minutes
"""
import os

if os.environ.get("DMLC_ROLE") in ("server", "scheduler"):
    # A dist kvstore server runs inside `import mxnet` (kvstore_server.py, reached through
    # mxnet.contrib before mxnet/__init__ gets to lr_scheduler) and unpickles the optimizer
    # there, schedule included; models.schedules then finds no mx.lr_scheduler and the
    # server dies ("init N first"). Import MXNet as a worker, then run the role.
    _role = os.environ["DMLC_ROLE"]
    os.environ["DMLC_ROLE"] = "worker"
    import mxnet  # noqa: E402
    import models.schedules  # noqa: E402,F401
    os.environ["DMLC_ROLE"] = _role
    from mxnet.kvstore.kvstore_server import _init_kvstore_server_module  # noqa: E402
    _init_kvstore_server_module()  # serves until the workers finish, then exits

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from datasets import classes as class_names  # noqa: E402
from datasets import detection_data as dd  # noqa: E402
from eval import cv, runs  # noqa: E402
from eval import detection as det_eval  # noqa: E402
from models import anchors as anchor_fit  # noqa: E402
from models import budget, devices, grid, optim, recipes, resume, schedules, yolo, yolo_train  # noqa: E402
from models.ema import ModelEMA, ema_decay_for, tau_for  # noqa: E402
from models.epochs import fit  # noqa: E402

SCRIPT = "train_yolo3"
#: The box convention of every score this script writes (CV, OOF, test, model.json): the VOC
#: devkit's +1 in widths and heights, as GluonCV's VOC metrics and the Cartucho tool use.
OFFSET = 1
GRID_KEYS = ("lr", "lr_mode", "lr_steps", "lr_factor", "lr_gamma", "min_lr", "max_lr",
             "step_size_iters", "warmup_epochs", "warmup_lr", "epochs", "batch_size",
             "data_shape", "max_side", "wd", "momentum", "focal_alpha", "focal_gamma",
             "random_shape", "extra_augment", "max_expand", "optimizer", "ema_decay", "anchors",
             "prior_init", "head_scale")
#: Training images are decoded once and kept in memory when they take at most this much.
CACHE_BYTES = 1 << 30
# Options a resumed run takes from its args.json; giving a different value is refused.
FIXED_ON_RESUME = GRID_KEYS + ("data", "grid", "network", "pretrained_base", "init_params",
                               "classes", "seed", "val_interval", "score_thresh", "top_k",
                               "final_model", "fusion_iou", "recipe", "time_budget")
log = logging.getLogger(__name__)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None,
                   help="prepare_data.py output folder (required unless --resume)")
    p.add_argument("--grid", default=None,
                   help="hyper-parameter sets: 'lr=1e-3,5e-4;epochs=30,60' (product) or a JSON "
                        f"file/text; keys: {', '.join(GRID_KEYS)} (default: one set, the "
                        "command-line values)")
    p.add_argument("--classes", default=None,
                   help="comma-separated class names; only a check: they must equal "
                        "DATA/classes.txt, which is used (default: that file)")
    yolo.add_model_arguments(p)
    g = p.add_argument_group("training (unset options take the --recipe's value)")
    g.add_argument("--recipe", choices=recipes.CHOICES, default="auto",
                   help="defaults of the options below: 'paper' (GluonCV's SGD recipe, 416 px, "
                        "random shapes, augmentation; for a GPU or --pretrained-base), 'cpu' "
                        "(measured from scratch on a CPU: Adam, 128 px, fixed shape, no "
                        "zoom-out); auto picks paper with --gpus or --pretrained-base "
                        "(default %(default)s)")
    g.add_argument("--epochs", type=int, default=None,
                   help="epochs per model (recipe: 30; --time-budget sizes it instead)")
    g.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="size the epochs so that every model, its validations and the test "
                        "predictions fit into this many minutes, from this machine's measured "
                        "throughput; the count is recorded (args.json derived.time_budget) and "
                        "reproduces the run elsewhere as --epochs")
    g.add_argument("--batch-size", type=int, default=None,
                   help="images per step, per worker (recipe: 8)")
    g.add_argument("--data-shape", type=int, default=None,
                   help="input size in pixels, multiple of 32 (recipe: paper 416, cpu 128); "
                        "with random shapes training draws sizes in [0.75, 1.5] x it")
    g.add_argument("--random-shape", action=argparse.BooleanOptionalAction, default=None,
                   help="train at random input sizes (GluonCV's; recipe: paper on, cpu off)")
    g.add_argument("--extra-augment", action=argparse.BooleanOptionalAction, default=None,
                   help="datasets.augment.ExtraAugment (rotation, noise, brightness, contrast, "
                        "sharpness) before GluonCV's transform (recipe: paper on, cpu off)")
    g.add_argument("--optimizer", default=None, choices=["sgd", "adam"],
                   help="sgd with --momentum (GluonCV's recipe) or adam (recipe: cpu)")
    g.add_argument("--max-expand", type=float, default=None,
                   help="largest zoom-out of GluonCV's random expand; 4 is GluonCV's, 1 turns "
                        "it off: small lesions vanish at small input sizes (recipe: paper 4, "
                        "cpu 1)")
    g.add_argument("--max-side", type=int, default=-1,
                   help="shrink training images to this longer side (px) before augmenting; "
                        "-1 = the largest training input size, 0 = never (default %(default)s)")
    g.add_argument("--anchors", default="auto",
                   help="'auto': GluonCV's unless they cover < 98%% of the training boxes at "
                        "the input size (Ultralytics' autoanchor rule), then k-means (1 - IoU); "
                        "'fit': always k-means; 'coco': GluonCV's; or 9 'WxH' pairs, small to "
                        "large (default %(default)s)")
    g.add_argument("--head-scale", type=float, default=None,
                   help="width of the detection heads relative to the zoo network's; at small "
                        "inputs they cost most of the compute (recipe: paper 1, cpu see "
                        "models/recipes.py)")
    g.add_argument("--prior-init", action=argparse.BooleanOptionalAction, default=True,
                   help="start the objectness and class biases at the training data's base "
                        "rates (RetinaNet's prior, Ultralytics' bias init) instead of 0.5; "
                        "off with --init-params (default %(default)s)")
    g.add_argument("--ema-decay", type=_ema_decay, default="auto",
                   help="weight average for validation and the saved model (Ultralytics' "
                        "ModelEMA): a decay in (0, 1), 0 = off, or 'auto': an averaging "
                        "window of 5%% of the run's updates (Ultralytics' 0.9999 is for runs "
                        "of 10^5 updates; 0.999 lagged a 770-update run) (default "
                        "%(default)s)")
    g.add_argument("--wd", type=float, default=5e-4, help="weight decay (default %(default)s)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default %(default)s)")
    g.add_argument("--num-workers", type=int, default=1,
                   help="loader processes (default %(default)s; see bench/bench_train_loop.py)")
    g.add_argument("--val-interval", type=int, default=1,
                   help="validate every N epochs and at the last, for the curve in metrics.csv "
                        "(default %(default)s)")
    schedules.add_schedule_arguments(p)
    p.set_defaults(lr=None, warmup_epochs=None)
    g = p.add_argument_group("predictions and selection")
    g.add_argument("--score-thresh", type=float, default=0.01,
                   help="keep predicted boxes scoring at least this (default %(default)s)")
    g.add_argument("--top-k", type=int, default=100,
                   help="at most this many boxes per image (default %(default)s)")
    g.add_argument("--final-model", choices=("ensemble", "retrain"), default="ensemble",
                   help="ensemble: the best set's fold models, detections fused by weighted "
                        "box fusion (scores on the scale of the out-of-fold threshold, no "
                        "extra training); retrain: one model on every training id (default "
                        "%(default)s; --only final always retrains)")
    g.add_argument("--fusion-iou", type=float, default=0.55,
                   help="IoU above which the ensemble fuses boxes (default %(default)s)")
    g = p.add_argument_group("parallelism")
    g.add_argument("--folds-parallel", type=int, default=1,
                   help="train this many set x fold jobs at once, one process and one "
                        "device (--gpus entry) each (default %(default)s)")
    g.add_argument("--fold-threads", type=int, default=0,
                   help="OpenMP threads per --folds-parallel process on CPU; 0 = CPUs / "
                        "--folds-parallel. Results depend on it: MKLDNN's sums change with "
                        "the thread count (default %(default)s)")
    g.add_argument("--only", default=None, metavar="JOB",
                   help="train one job and stop: 'S:K' (set S, fold K) or 'final'; used by "
                        "--folds-parallel and with a dist kvstore (one model per launch)")
    g.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="tqdm progress bars (auto: only on a terminal)")
    devices.add_device_arguments(p)
    runs.add_run_arguments(p, SCRIPT)
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def _ema_decay(text):
    if str(text) == "auto":
        return "auto"
    value = float(text)
    if not (value == 0 or 0 < value < 1):
        raise argparse.ArgumentTypeError(f"want 'auto', 0 (off) or a decay in (0, 1), "
                                         f"got {text}")
    return value


def job_params(args, overrides):
    p = copy.copy(args)
    for k, v in overrides.items():
        setattr(p, k, v)
    return p


def predict_ids(net, data, sample_ids, p, ctx, args, loader=None):
    """``id -> detections`` (half pixels) for ``sample_ids``; ``loader`` must list them in
    that order (one is made when not given)."""
    loader = loader or dd.val_loader(data.subset(sample_ids), p.data_shape, p.batch_size, 0)
    preds = yolo_train.predict(net, loader, ctx, args.score_thresh, args.top_k)
    return dict(zip(sample_ids, preds))


def score(gt, dets, classes, per_class=False):
    # Images in file-name order, as the Cartucho tool reads the folders written from them:
    # equal scores (an untrained net gives many) then rank alike in both.
    gt = {i: gt[i] for i in sorted(gt)}
    res = det_eval.evaluate(gt, dets, classes, iou=0.5, offset=OFFSET)
    out = {"map_voc12": float(res["map_voc12"]), "map_voc07": float(res["map_voc07"])}
    if per_class:  # not per epoch: metrics.csv keeps scalar columns
        out["ap_voc12"] = {c: float(v["ap_voc12"]) for c, v in res["per_class"].items()}
    return out


def job_anchors(data, train_ids, p):
    """The anchors of a model trained on ``train_ids`` (None: the network's COCO ones)."""
    if p.anchors == "coco":
        return None
    if p.anchors not in ("auto", "fit"):
        return parse_anchors(p.anchors)
    gt, sizes = data.ground_truth(train_ids, with_sizes=True)
    wh = anchor_fit.boxes_at_input([gt[i]["boxes"] for i in train_ids],
                                   [sizes[i] for i in train_ids], p.data_shape)
    if len(wh) < 9:
        log.warning("%d training boxes: too few to fit 9 anchors, keeping GluonCV's", len(wh))
        return None
    if p.anchors == "fit":
        return anchor_fit.fit_anchors(wh, 9, seed=0).round(2).tolist()
    fitted, fitness = anchor_fit.check_anchors(wh)
    log.info("anchors: GluonCV's cover %.3f of the training boxes at %d px (ratio 4)%s",
             anchor_fit.anchor_fitness(wh, anchor_fit.COCO_ANCHORS)["best_possible_recall"],
             p.data_shape, "; refitted" if fitted is not None else "; kept")
    return None if fitted is None else fitted.round(2).tolist()


def parse_anchors(text):
    try:
        pairs = [[float(v) for v in item.lower().split("x")] for item in text.split(",")]
        if len(pairs) != 9 or any(len(wh) != 2 or min(wh) <= 0 for wh in pairs):
            raise ValueError
    except ValueError:
        raise ValueError(f"--anchors wants 'auto', 'coco' or 9 positive 'WxH' pairs separated by "
                         f"commas (e.g. 10x13,16x30,...), got {text!r}") from None
    return pairs


def train_job(run, name, p, data, ctx, kv, args, train_ids, val_ids=None, seed=0):
    """Train one model (a set x fold, or the retrained final one); returns its result dict.

    Rank 0 records and checkpoints through ``models.epochs.fit`` (resuming from the job's
    last checkpoint); other dist workers only step. The model is the last epoch's weight
    average, saved as ``checkpoints/model.params``; with ``val_ids`` it predicts them
    (``val_detections.json``) and its score there is the job's result.
    """
    job = run.subrun(name) if kv.rank == 0 else None
    if job is not None and (job.dir / "done.json").exists():
        return job.read_json("done.json")
    t0 = time.time()
    from datasets.augment import ExtraAugment
    extra = ExtraAugment() if p.extra_augment else None
    anchors = job_anchors(data, train_ids, p)
    # Transforms first (built once per process, drawing random numbers the first time), so
    # a job's random stream is the same whether it runs first, later, or in its own process.
    transforms = data.transforms(p.data_shape, p.random_shape, extra, p.max_expand, anchors)
    yolo_train.seed_all(seed)
    net = yolo.build(p.network, data.classes, p.pretrained_base, p.init_params, p.focal_alpha,
                     p.focal_gamma, ctx, anchors=anchors, head_scale=p.head_scale)
    if p.prior_init and not p.init_params:
        gt_train = data.ground_truth(train_ids)
        per_image = np.mean([np.sum(~g["difficult"]) for g in gt_train.values()])
        yolo.init_output_priors(net, per_image, p.data_shape, 0.6 / len(data.classes))
    max_side = max(dd.random_shapes(p.data_shape, p.random_shape)) \
        if p.max_side < 0 else p.max_side
    cache = data.cache_bytes(train_ids, max_side) <= CACHE_BYTES
    train_set = data.subset(train_ids, seed, max_side, cache=cache)
    sampler = dd.SplitSampler(len(train_set), kv.num_workers, kv.rank, seed)
    batch = min(p.batch_size, len(sampler))
    ipe = len(sampler) // batch
    trainer, sched = optim.scheduled_trainer(net, schedules.schedule_kwargs(p), ipe, p.epochs,
                                             p.optimizer, p.wd, p.momentum,
                                             kv.kv or args.kvstore, args.amp)
    ema = None
    if p.ema_decay:
        updates = ipe * p.epochs
        decay = ema_decay_for(updates) if p.ema_decay == "auto" else p.ema_decay
        ema = ModelEMA(net, decay, tau_for(updates))
    loader = dd.train_loader(train_set, transforms, batch, args.num_workers, sampler)
    log.info("%s: %d training images (%d on this worker), batch %d, %d iterations/epoch, "
             "%d epochs, max side %s, anchors %s, %s", name, len(train_set), len(sampler),
             batch, ipe, p.epochs, max_side, anchors or "coco", sched)
    gt = data.ground_truth(val_ids) if val_ids else None
    # One validation loader per job (gluon's DataLoader runs gc.collect() in __init__).
    vloader = dd.val_loader(data.subset(val_ids), p.data_shape, p.batch_size, 0) if gt else None
    progress = {"auto": None, "on": True, "off": False}[args.progress]

    def averaged():
        return ema.applied() if ema is not None else contextlib.nullcontext()

    def train_epoch(epoch):
        sampler.set_epoch(epoch)
        row = yolo_train.train_epoch(net, trainer, loader, ctx, epoch, kv.num_workers,
                                     args.amp, progress, desc=name, ema=ema)
        if kv.distributed:
            # The schedule runs on the servers; trainer.learning_rate is the worker's stale
            # copy (MXNET_TRAPS 36). Report the schedule's LR at the epoch's last update.
            row["lr"] = sched.lr_at((epoch + 1) * ipe - 1)
        row.update(map_voc12=None, map_voc07=None)  # fixes the CSV columns on epoch 0
        return row

    def validate(epoch):
        if gt is None:
            return {"map_voc12": None, "map_voc07": None}
        with averaged():
            return score(gt, predict_ids(net, data, val_ids, p, ctx, args, vloader), data.classes)

    try:
        if job is None:
            for epoch in range(p.epochs):
                train_epoch(epoch)
            log.info("%s rank %d: param digest %s", name, kv.rank, yolo_train.param_digest(net))
            return None
        diverged = None
        try:
            fit(job, net, trainer, p.epochs, train_epoch, validate, None, resume=True,
                val_interval=args.val_interval, extra_state={"seed": seed, "job": name}, ema=ema)
        except FloatingPointError as err:
            if gt is None:  # the final model has no fold result to fall back on
                raise
            # A set whose LR diverges is a CV result (a model that finds nothing), not a
            # crash: go on with the other jobs.
            diverged = str(err)
            log.warning("%s diverged: %s", name, err)
    finally:
        dd.close_loader(loader)
    rows = job.metrics.rows()
    validated = [float(r["map_voc12"]) for r in rows if r.get("map_voc12")]
    result = {"job": name, "params": grid.set_label(getattr(p, "grid_overrides", {})),
              "epochs": p.epochs, "seconds": time.time() - t0, "diverged": diverged,
              "images_per_s": float(np.mean([float(r["images_per_s"]) for r in rows]))
              if rows else 0.0, "anchors": anchors, "iters_per_epoch": ipe, "batch": batch,
              "schedule": schedules.schedule_kwargs(p),
              # optimistic: the epoch is chosen on the fold it is scored on (extra column)
              "best_epoch": int(np.argmax(validated)) if validated else -1,
              "best_epoch_map_voc12": max(validated) if validated else None}
    if diverged is None:
        # the trained weights (equal on every dist worker) and the saved model (their average)
        result["param_digest"] = yolo_train.param_digest(net)
        with averaged():
            save_model(net, job.path("checkpoints", "model.params"))
            result["model_digest"] = yolo_train.param_digest(net)
            if gt is not None:
                dets = predict_ids(net, data, val_ids, p, ctx, args, vloader)
                det_eval.write_detections_json(job.path("val_detections.json"), dets,
                                               data.classes)
                result.update(score(gt, dets, data.classes))
    else:
        result.update(map_voc12=0.0, map_voc07=0.0, param_digest=None, model_digest=None)
    job.write_json("done.json", result)
    log.info("%s done: %s", name, {k: v for k, v in result.items()
                                   if k not in ("param_digest", "model_digest", "anchors",
                                                "schedule")})
    return result


def save_model(net, path):
    tmp = path.with_name(f".{path.name}.tmp")
    net.save_parameters(str(tmp))
    os.replace(tmp, path)


def run_parallel(run, jobs, args):
    """Run ``(set, fold)`` jobs as child processes, ``args.folds_parallel`` at a time."""
    gpus = [g for g in (args.gpus or "").split(",") if g.strip()]
    threads = args.fold_threads or max(1, (os.cpu_count() or 1) // args.folds_parallel)
    pending, running, failed = list(jobs), [], []
    slot_free = list(range(args.folds_parallel))
    while pending or running:
        while pending and slot_free:
            (s, k), slot = pending.pop(0), slot_free.pop(0)
            cmd = [sys.executable, os.path.abspath(__file__), "--data", args.data,
                   "--resume", str(run.dir), "--only", f"{s}:{k}", "--progress", "off",
                   "--gpus", gpus[slot % len(gpus)] if gpus else "",
                   "--num-workers", str(args.num_workers)]
            env = dict(os.environ) if gpus else dict(os.environ, OMP_NUM_THREADS=str(threads))
            console = open(run.path(f"set{s}_fold{k}", "console.txt"), "ab")
            proc = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT, env=env)
            running.append((proc, slot, (s, k), console))
            run.log.info("started set %d fold %d in process %d", s, k, proc.pid)
        time.sleep(0.5)
        for item in list(running):
            proc, slot, job, console = item
            if proc.poll() is not None:
                running.remove(item)
                slot_free.append(slot)
                console.close()
                if proc.returncode != 0:
                    failed.append((job, proc.returncode))
    if failed:
        raise RuntimeError(f"fold job(s) failed: {failed}; see set<S>_fold<K>/console.txt")


def parse_job(text, n_sets, n_folds):
    if text == "final":
        return "final"
    try:
        s, k = (int(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--only wants 'S:K' (set, fold) or 'final', got {text!r}") from None
    if not (0 <= s < n_sets and 0 <= k < n_folds):
        raise ValueError(f"--only {text}: sets are 0..{n_sets - 1}, folds 0..{n_folds - 1}")
    return s, k


def open_run(args, kv, derived):
    """The run folder: new, resumed, a --folds-parallel child's view, or a dist worker's."""
    if args.only and args.resume and not kv.distributed:  # a --folds-parallel child
        run_dir = Path(args.resume)
        job = "final" if args.only == "final" else "set{}_fold{}".format(*args.only.split(":"))
        return runs.Run(run_dir, runs.setup_logging(run_dir / job / "log.txt"))
    if not kv.distributed:
        return runs.start(SCRIPT, args, derived=derived)
    if args.resume:
        raise ValueError("--resume is not supported with a dist kvstore: MXNet cannot save "
                         "trainer states there (MXNET_TRAPS 36); start a new run")
    if not args.name:
        raise ValueError("a dist kvstore needs --name, so that every worker uses the same run "
                         "folder")
    # Every worker must use ROOT/NAME exactly (runs.start would pick NAME-2 if a worker had
    # created it first): check, wait, rank 0 creates it, wait, the others log into it.
    run_dir = Path(args.out) / args.name
    if run_dir.exists():
        raise FileExistsError(f"{run_dir} exists; a dist run needs a fresh --name")
    kv.kv._barrier()
    run = runs.start(SCRIPT, args, derived=derived) if kv.rank == 0 else None
    kv.kv._barrier()
    if run is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        run = runs.Run(run_dir, runs.setup_logging(run_dir / f"log.txt.rank{kv.rank}"))
    return run


def main(args):
    t_start = time.time()
    parser = build_parser()
    stored = resume.resume_options(args, parser, FIXED_ON_RESUME) if args.resume else None
    if not args.data:
        raise ValueError("--data DATA is required (a prepare_data.py output folder)")
    recipe = recipes.choose(args.recipe, args.gpus, args.pretrained_base)
    from_recipe = recipes.apply(args, recipe)
    sets = grid.parse_grid(args.grid, grid.grid_types(parser, GRID_KEYS))
    if args.time_budget is not None and any("epochs" in s for s in sets):
        raise ValueError("--time-budget sizes the epochs itself: drop 'epochs' from --grid")
    kv = yolo_train.KVInfo(yolo_train.create_kvstore(args.kvstore))
    if kv.distributed and not args.only:
        raise ValueError("with a dist kvstore each launch trains one model: add --only final "
                         "(or --only S:K); the kvstore servers keep one optimizer state per "
                         "parameter key, which a second model in the same launch would reuse")
    classes = class_names.data_classes(args.data, args.classes)
    ctx = devices.contexts(args.gpus)
    devices.check_amp(args.amp, ctx)
    run = open_run(args, kv, {"sets": sets, "recipe": recipe, "from_recipe": from_recipe})
    run.log.info("recipe %s for %s", recipe, ", ".join(f"{k}={getattr(args, k)}"
                                                       for k in from_recipe) or "nothing")
    data = dd.DetectionData(args.data, classes,
                             lambda anchors=None: yolo.transform_net(args.network, classes,
                                                                     anchors))
    folds = data.splits["folds"]
    job = parse_job(args.only, len(sets), len(folds)) if args.only else None
    params = [job_params(args, dict(s, grid_overrides=s)) for s in sets]
    cv_jobs = [(s, k) for s in range(len(sets)) for k in range(len(folds))]
    if args.time_budget is not None:
        plan = (stored or {}).get("derived", {}).get("time_budget")  # resumed run or child
        if plan is None:
            plan = plan_budget(run, args, params, data, ctx, job, cv_jobs, t_start)
        for p in params:
            p.epochs = plan["epochs"]
    if "warmup_epochs" in from_recipe:  # a short run keeps half its epochs out of warm-up
        for p in params:
            p.warmup_epochs = min(p.warmup_epochs, p.epochs / 2.0)
    if args.amp:
        # Train transforms run an fp32 net on the CPU: build them before amp.init (TRAPS 42).
        for p in params:
            data.transforms(p.data_shape, p.random_shape, None, p.max_expand)
        from mxnet.contrib import amp
        amp.init()

    def fold_job(s, k):
        return train_job(run, f"set{s}_fold{k}", params[s], data, ctx, kv, args,
                         folds[k]["train"], folds[k]["val"], seed=args.seed * 1000 + k)

    if isinstance(job, tuple):
        return fold_job(*job)
    results = {}
    if job is None:
        if args.folds_parallel > 1:
            run_parallel(run, [j for j in cv_jobs
                               if not (run.dir / f"set{j[0]}_fold{j[1]}" / "done.json").exists()],
                         args)
        for s, k in cv_jobs:
            results[s, k] = fold_job(s, k)  # done jobs are read back, not retrained
    return finish(run, args, sets, params, data, ctx, kv, results)


def plan_budget(run, args, params, data, ctx, job, cv_jobs, t_start):
    """Epochs per model from ``--time-budget`` and this machine's measured rates."""
    retrain = job == "final" or args.final_model == "retrain"
    p = max(params, key=lambda q: q.data_shape)
    train_ids = data.splits["train"] if job == "final" else data.splits["folds"][0]["train"]
    rates = calibrate(data, p, ctx, args, train_ids)
    folds = data.splits["folds"]
    n_jobs = (0 if job == "final" else len(cv_jobs)) + int(retrain)
    members = 1 if retrain else len(folds)
    largest = len(data.splits["train"]) if retrain else max(len(f["train"]) for f in folds)
    val = 0 if job == "final" else max(len(f["val"]) for f in folds)
    after = members * len(data.splits["test"]) / rates["predict_images_per_s"] + 5.0
    plan = budget.epochs_for_budget(
        args.time_budget * 60.0 - (time.time() - t_start), largest,
        rates["train_images_per_s"], val, rates["predict_images_per_s"], args.val_interval,
        n_jobs, after_s=after, job_overhead_s=rates["job_overhead_s"])
    plan.update(minutes=args.time_budget, calibration_s=rates["seconds"])
    runs.record_derived(run, {"time_budget": plan})
    run.log.info("time budget %.1f min: %d model(s) x %d epochs (%.1f training images/s, %.1f "
                 "s per epoch, %.0f s planned)", args.time_budget, n_jobs, plan["epochs"],
                 plan["train_images_per_s"], plan["seconds_per_epoch"], plan["planned_s"])
    return plan


def calibrate(data, p, ctx, args, train_ids, iters=6):
    """Training and prediction images/s of this machine at ``p``'s settings (a throwaway
    net; the jobs' random streams are seeded afterwards, so they do not depend on it)."""
    from datasets.augment import ExtraAugment
    t0 = time.time()
    shapes = dd.random_shapes(p.data_shape, p.random_shape)
    transforms = data.transforms(p.data_shape, False,
                                 ExtraAugment() if p.extra_augment else None, p.max_expand)
    net = yolo.build(p.network, data.classes, ctx=ctx, head_scale=p.head_scale)
    trainer = optim.make_trainer(net, None, args.kvstore, p.wd, p.momentum,
                                 learning_rate=1e-7, optimizer=p.optimizer)
    batch = min(p.batch_size, len(train_ids))
    max_side = max(shapes) if p.max_side < 0 else p.max_side
    subset = data.subset(train_ids, 0, max_side,
                         cache=data.cache_bytes(train_ids, max_side) <= CACHE_BYTES)
    loader = dd.train_loader(subset, transforms, batch, args.num_workers)
    job_overhead = time.time() - t0
    try:
        yolo_train.set_mode(net, "train")
        batches = ((b, b[0].shape[0]) for b in itertools.islice(yolo_train.endless(loader),
                                                                 iters + 2))
        rate = budget.measure_rate(lambda b: yolo_train.train_step(net, trainer, b, ctx),
                                   batches, warmup=2)
    finally:
        dd.close_loader(loader)
    # Random shapes: compute grows with the input area; calibrated at data_shape only.
    rate *= p.data_shape ** 2 / float(np.mean(np.square(shapes)))
    ids = train_ids[:3 * batch]
    yolo_train.set_mode(net, "predict", post_nms=args.top_k)
    vl = dd.val_loader(data.subset(ids), p.data_shape, batch, 0)
    pred = budget.measure_rate(lambda b: net(b[0].as_in_context(ctx[0]))[0].wait_to_read(),
                               ((b, b[0].shape[0]) for b in vl), warmup=1)
    return {"train_images_per_s": rate, "predict_images_per_s": pred,
            "job_overhead_s": job_overhead, "seconds": time.time() - t0}


def finish(run, args, sets, params, data, ctx, kv, results):
    """CV tables, out-of-fold detections, the final model, its test predictions, summary."""
    summary = {"run": str(run.dir), "sets": [grid.set_label(s) for s in sets], "offset": OFFSET}
    best = 0
    folds = range(len(data.splits["folds"]))
    if results:
        rows = [{"set": s, "fold": k, "params": grid.set_label(sets[s]), **sets[s],
                 "epochs": params[s].epochs, "map_voc12": r["map_voc12"],
                 "map_voc07": r["map_voc07"], "best_epoch": r["best_epoch"],
                 "best_epoch_map_voc12": r.get("best_epoch_map_voc12"),
                 "seconds": r["seconds"], "images_per_s": r["images_per_s"],
                 "diverged": r.get("diverged") or ""}
                for (s, k), r in results.items()]
        cv.write_csv(run.path("cv_results.csv"), rows)
        table = cv.summarize(rows)
        cv.write_csv(run.path("cv_summary.csv"), table)
        best = cv.best_set(table)
        missing = [k for (s, k), r in results.items() if s == best
                   and not (run.dir / f"set{s}_fold{k}" / "val_detections.json").is_file()]
        if missing:
            raise RuntimeError(f"the best set {best} has folds {missing} without a model (they "
                               f"diverged); see cv_results.csv")
        plot_cv(run, rows)
        oof = cv.merge_out_of_fold(
            [det_eval.read_detections_json(run.dir / f"set{best}_fold{k}" /
                                           "val_detections.json")[0] for k in folds],
            data.splits["train"])
        train_gt = data.ground_truth(data.splits["train"])
        write_predictions(run, "oof", oof, train_gt, data.classes)
        try:  # the detector's operating point for predict.py, chosen on OOF (not test) data
            summary["oof_f1_threshold"] = det_eval.best_f1_threshold(
                train_gt, oof, iou=0.5, offset=OFFSET)["score_threshold"]
        except ValueError as err:  # no OOF detection at all
            run.log.warning("no F1 operating point on OOF detections: %s", err)
        row = table[best]
        oof_score = score(train_gt, oof, data.classes, per_class=True)
        summary.update(cv_map_mean=row["map_voc12_mean"], cv_map_std=row["map_voc12_std"],
                       cv_map_voc07_mean=row["map_voc07_mean"], cv_table=table,
                       oof_map_voc12=oof_score["map_voc12"], oof_ap_voc12=oof_score["ap_voc12"])
    p = params[best]
    final_model = args.final_model if results else "retrain"
    if final_model == "retrain":
        final = train_job(run, "final", p, data, ctx, kv, args, data.splits["train"],
                          seed=args.seed * 1000 + 999)
        if kv.rank > 0:
            return {"rank": kv.rank}
        members = ["final/checkpoints/model.params"]
        summary.update(final_epochs=final["epochs"], final_images_per_s=final["images_per_s"],
                       param_digest=final["param_digest"], model_digest=final["model_digest"])
        from eval import plots
        plots.plot_metrics_csv(run.dir / "final" / "metrics.csv", run.path("plots", "final.png"),
                               title="final model")
    else:
        members = [f"set{best}_fold{k}/checkpoints/model.params" for k in folds]
    nets = []
    for m in members:
        net = yolo.build(p.network, data.classes, ctx=ctx, head_scale=p.head_scale)
        yolo.load_params(net, run.dir / m, ctx)
        nets.append(net)
    test_ids = data.splits["test"]
    test_gt = data.ground_truth(test_ids)
    loader = dd.val_loader(data.subset(test_ids), p.data_shape, p.batch_size, 0)
    test_det = dict(zip(test_ids, yolo_train.predict_models(
        nets, loader, ctx, args.score_thresh, args.top_k, args.fusion_iou)))
    write_predictions(run, "test", test_det, test_gt, data.classes)
    model = yolo.model_json(p.network, data.classes, p.data_shape, members, OFFSET,
                            args.fusion_iou, p.head_scale)
    if summary.get("oof_f1_threshold") is not None:
        model["score_threshold"] = summary["oof_f1_threshold"]
    run.write_json("model.json", model)
    test = score(test_gt, test_det, data.classes, per_class=True)
    rand = random_baseline(data, test_gt)
    summary.update(best_set=best, best_params=grid.set_label(sets[best]),
                   final_model=final_model, members=members, epochs=p.epochs,
                   test_map_voc12=test["map_voc12"], test_map_voc07=test["map_voc07"],
                   classes=data.classes, test_ap_voc12=test["ap_voc12"],
                   test_random_map_voc12=rand["map_voc12"],
                   test_random_map_voc07=rand["map_voc07"])
    run.log.info("test mAP VOC12 %.4f VOC07 %.4f (random boxes: %.4f / %.4f)",
                 test["map_voc12"], test["map_voc07"], rand["map_voc12"], rand["map_voc07"])
    return run.finish(summary)


def write_predictions(run, name, dets, gt, classes):
    det_eval.write_detections_json(run.path(f"{name}_detections.json"), dets, classes)
    folder = run.dir / name
    if folder.exists():  # a resumed run rewrites the Cartucho folders
        shutil.rmtree(folder)
    det_eval.write_cartucho(folder, classes, gt=gt, det=dets)


def random_baseline(data, gt, repeats=5, per_image=10):
    """Mean test mAP of random boxes with training-set box sizes (chance reference)."""
    train_gt = data.ground_truth(data.splits["train"])
    wh = np.concatenate([g["boxes"][:, 2:] - g["boxes"][:, :2] for g in train_gt.values()])
    _, sizes = data.ground_truth(list(gt), with_sizes=True)
    maps = [score(gt, cv.random_detections(sizes, wh, per_image, seed=r), data.classes)
            for r in range(repeats)]
    return {k: float(np.mean([m[k] for m in maps])) for k in ("map_voc12", "map_voc07")}


def plot_cv(run, rows):
    from eval import plots
    plots.plot_cv(rows, run.path("plots", "cv.png"), metric="map_voc12")


if __name__ == "__main__":
    try:
        main(parse_args())
    except Exception:
        # Into log.txt as well as onto the console.
        logging.getLogger(SCRIPT).exception("train_yolo3 failed")
        raise
