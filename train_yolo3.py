"""Train the YOLOv3 detector: k-fold cross-validation over a hyper-parameter grid, then the
best set retrained on every training id and scored once on the test split.

For every set x fold the model trains on the fold's training ids and keeps its best epoch by
validation mAP (VOC12 all-point, IoU 0.5, offset 0; VOC07 recorded too); that model predicts
its validation ids, so together the folds give out-of-fold detections for the whole training
set. The final model trains for the set's epochs and is the last epoch (``--final-model
last``) or, with ``--final-model cv-median``, the epoch that is the median of the folds' best
epochs (no selection on the test split either way). Artefacts: docs/CONTRACTS.md.

    python train_yolo3.py --data DATA --grid "lr=1e-3,5e-4;epochs=30,60" --gpus 0
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
import copy  # noqa: E402
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
from models import devices, grid, schedules, yolo, yolo_train  # noqa: E402
from models.epochs import fit  # noqa: E402

SCRIPT = "train_yolo3"
GRID_KEYS = ("lr", "lr_mode", "lr_steps", "lr_factor", "lr_gamma", "min_lr", "max_lr",
             "step_size_iters", "warmup_epochs", "warmup_lr", "epochs", "batch_size",
             "data_shape", "max_side", "wd", "momentum", "focal_alpha", "focal_gamma",
             "no_random_shape", "no_extra_augment", "max_expand", "optimizer")
# Options a resumed run takes from its args.json; giving a different value is refused.
FIXED_ON_RESUME = GRID_KEYS + ("data", "grid", "network", "pretrained_base", "init_params",
                               "classes", "seed", "val_interval", "score_thresh", "top_k",
                               "final_model")
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
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=30, help="epochs per model (default %(default)s)")
    g.add_argument("--batch-size", type=int, default=8,
                   help="images per step, per worker (default %(default)s)")
    g.add_argument("--data-shape", type=int, default=320,
                   help="input size in pixels for validation/prediction, multiple of 32; "
                        "training draws sizes in [0.75, 1.5] x it (default %(default)s)")
    g.add_argument("--no-random-shape", action="store_true",
                   help="train at --data-shape only (faster, slightly worse)")
    g.add_argument("--no-extra-augment", action="store_true",
                   help="skip datasets.augment.ExtraAugment (rotation, noise, brightness, "
                        "contrast, sharpness) before GluonCV's transform")
    g.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"],
                   help="sgd with --momentum (GluonCV's recipe) or adam, which learns from "
                        "scratch in far fewer iterations (default %(default)s)")
    g.add_argument("--max-expand", type=float, default=4.0,
                   help="largest zoom-out of GluonCV's random expand; 4 is GluonCV's, 1 turns "
                        "it off (small lesions vanish at small input sizes) (default %(default)s)")
    g.add_argument("--max-side", type=int, default=-1,
                   help="shrink training images to this longer side (px) before augmenting; "
                        "-1 = the largest training input size, 0 = never (default %(default)s)")
    g.add_argument("--wd", type=float, default=5e-4, help="weight decay (default %(default)s)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default %(default)s)")
    g.add_argument("--num-workers", type=int, default=1,
                   help="loader processes (default %(default)s; see bench/bench_train_loop.py)")
    g.add_argument("--val-interval", type=int, default=1,
                   help="validate every N epochs and at the last (default %(default)s)")
    schedules.add_schedule_arguments(p)
    g = p.add_argument_group("predictions and selection")
    g.add_argument("--score-thresh", type=float, default=0.01,
                   help="keep predicted boxes scoring at least this (default %(default)s)")
    g.add_argument("--top-k", type=int, default=100,
                   help="at most this many boxes per image (default %(default)s)")
    g.add_argument("--final-model", choices=("last", "cv-median"), default="last",
                   help="final model: last epoch of the best set, or its epoch at the median "
                        "of the folds' best epochs (default %(default)s)")
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


def resolve_resume(args, stored_options, defaults):
    """Take the training options of a resumed run from its args.json.

    An option in ``FIXED_ON_RESUME`` given with a value that is neither its default nor the
    stored one is refused (the run would change under the resumed models)."""
    for key in FIXED_ON_RESUME:
        if key not in stored_options:
            continue
        current, stored = getattr(args, key), stored_options[key]
        if current != stored and current != defaults.get(key):
            raise ValueError(f"--resume: --{key.replace('_', '-')} {current!r} conflicts with "
                             f"the run's {stored!r}; drop the option or start a new run")
        setattr(args, key, stored)
    return args


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
    res = det_eval.evaluate(gt, dets, classes, iou=0.5, offset=0)
    out = {"map_voc12": float(res["map_voc12"]), "map_voc07": float(res["map_voc07"])}
    if per_class:  # not per epoch: metrics.csv keeps scalar columns
        out["ap_voc12"] = {c: float(v["ap_voc12"]) for c, v in res["per_class"].items()}
    return out


def train_job(run, name, p, data, ctx, kv, args, train_ids, val_ids=None, epochs=None, seed=0):
    """Train one model (a set x fold, or the final one); returns its result dict.

    Rank 0 records and checkpoints through ``models.epochs.fit`` (resuming from the job's
    last checkpoint); other dist workers only step. With ``val_ids`` the best epoch by VOC12
    mAP is kept and predicts ``val_ids`` (written to ``val_detections.json``).
    """
    job = run.subrun(name) if kv.rank == 0 else None
    if job is not None and (job.dir / "done.json").exists():
        return job.read_json("done.json")
    t0 = time.time()
    from datasets.augment import ExtraAugment
    extra = None if p.no_extra_augment else ExtraAugment()
    # Transforms first (built once per process, drawing random numbers the first time), so
    # a job's random stream is the same whether it runs first, later, or in its own process.
    transforms = data.transforms(p.data_shape, not p.no_random_shape, extra, p.max_expand)
    yolo_train.seed_all(seed)
    net = yolo.build(p.network, data.classes, p.pretrained_base, p.init_params, p.focal_alpha,
                     p.focal_gamma, ctx)
    max_side = max(dd.random_shapes(p.data_shape, not p.no_random_shape)) \
        if p.max_side < 0 else p.max_side
    train_set = data.subset(train_ids, seed, max_side)
    sampler = dd.SplitSampler(len(train_set), kv.num_workers, kv.rank, seed)
    batch = min(p.batch_size, len(sampler))
    ipe = len(sampler) // batch
    sched = schedules.build_schedule(**schedules.schedule_kwargs(p), iters_per_epoch=ipe,
                                     epochs=p.epochs)
    trainer = yolo_train.make_trainer(net, sched, kv.kv or args.kvstore, p.wd, p.momentum,
                                      args.amp, optimizer=p.optimizer)
    loader = dd.train_loader(train_set, transforms, batch, args.num_workers, sampler)
    log.info("%s: %d training images (%d on this worker), batch %d, %d iterations/epoch, "
             "max side %s, %s", name, len(train_set), len(sampler), batch, ipe, max_side, sched)
    gt = data.ground_truth(val_ids) if val_ids else None
    # One validation loader per job (gluon's DataLoader runs gc.collect() in __init__).
    vloader = dd.val_loader(data.subset(val_ids), p.data_shape, p.batch_size, 0) if gt else None
    progress = {"auto": None, "on": True, "off": False}[args.progress]

    def train_epoch(epoch):
        sampler.set_epoch(epoch)
        row = yolo_train.train_epoch(net, trainer, loader, ctx, epoch, kv.num_workers,
                                     args.amp, progress, desc=name)
        if kv.distributed:
            # The schedule runs on the servers; trainer.learning_rate is the worker's stale
            # copy (MXNET_TRAPS 36). Report the schedule's LR at the epoch's last update.
            row["lr"] = sched.lr_at((epoch + 1) * ipe - 1)
        row.update(map_voc12=None, map_voc07=None)  # fixes the CSV columns on epoch 0
        return row

    def validate(epoch):
        if gt is None:
            return {"map_voc12": None, "map_voc07": None}
        return score(gt, predict_ids(net, data, val_ids, p, ctx, args, vloader), data.classes)

    epochs = epochs or p.epochs
    try:
        if job is None:
            for epoch in range(epochs):
                train_epoch(epoch)
            log.info("%s rank %d: param digest %s", name, kv.rank, yolo_train.param_digest(net))
            return None
        diverged = None
        try:
            res = fit(job, net, trainer, epochs, train_epoch, validate, "map_voc12",
                      resume=True, val_interval=args.val_interval,
                      extra_state={"seed": seed, "job": name})
        except FloatingPointError as err:
            if gt is None:  # the final model has no earlier best epoch to fall back on
                raise
            # A set whose LR diverges is a CV result, not a crash: keep its best validated
            # epoch before the divergence (if any) and go on with the other jobs.
            diverged = str(err)
            log.warning("%s diverged: %s", name, err)
            state = job.read_json("checkpoints/last.json", {}) or {}
            res = {"best_epoch": state.get("best_epoch", -1), "history": job.metrics.rows()}
    finally:
        dd.close_loader(loader)
    ckpt = job.dir / "checkpoints"
    if gt is None:  # no validation: the model is the last epoch
        shutil.copyfile(ckpt / "last.params", ckpt / ".best.params.tmp")
        os.replace(ckpt / ".best.params.tmp", ckpt / "best.params")
    rows = res["history"]
    result = {"job": name, "params": grid.set_label(getattr(p, "grid_overrides", {})),
              "best_epoch": res["best_epoch"] if gt is not None else epochs - 1,
              "epochs": epochs, "seconds": time.time() - t0, "diverged": diverged,
              "images_per_s": float(np.mean([float(r["images_per_s"]) for r in rows]))
              if rows else 0.0}
    if gt is not None and (ckpt / "best.params").is_file():
        yolo.load_params(net, ckpt / "best.params", ctx)
        dets = predict_ids(net, data, val_ids, p, ctx, args, vloader)
        det_eval.write_detections_json(job.path("val_detections.json"), dets, data.classes)
        result.update(score(gt, dets, data.classes))
    elif gt is not None:  # diverged before any validation: a model that detects nothing
        result.update(map_voc12=0.0, map_voc07=0.0)
    result["param_digest"] = yolo_train.param_digest(net)
    job.write_json("done.json", result)
    log.info("%s done: %s", name, {k: v for k, v in result.items() if k != "param_digest"})
    return result


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
    parser = build_parser()
    if args.resume:
        stored = json.loads((Path(args.resume) / "args.json").read_text(encoding="utf-8"))
        resolve_resume(args, stored["options"], vars(parser.parse_args([])))
    if not args.data:
        raise ValueError("--data DATA is required (a prepare_data.py output folder)")
    sets = grid.parse_grid(args.grid, grid.grid_types(parser, GRID_KEYS))
    kv = yolo_train.KVInfo(yolo_train.create_kvstore(args.kvstore))
    if kv.distributed and not args.only:
        raise ValueError("with a dist kvstore each launch trains one model: add --only final "
                         "(or --only S:K); the kvstore servers keep one optimizer state per "
                         "parameter key, which a second model in the same launch would reuse")
    classes = class_names.data_classes(args.data, args.classes)
    ctx = devices.contexts(args.gpus)
    devices.check_amp(args.amp, ctx)
    run = open_run(args, kv, {"sets": sets})
    data = dd.DetectionData(args.data, classes,
                             lambda: yolo.transform_net(args.network, classes))
    if args.amp:
        # Train transforms run an fp32 net on the CPU: build them before amp.init (TRAPS 42).
        for s in sets:
            p = job_params(args, s)
            data.transforms(p.data_shape, not p.no_random_shape, None)
        from mxnet.contrib import amp
        amp.init()
    folds = data.splits["folds"]
    job = parse_job(args.only, len(sets), len(folds)) if args.only else None
    params = [job_params(args, dict(s, grid_overrides=s)) for s in sets]
    cv_jobs = [(s, k) for s in range(len(sets)) for k in range(len(folds))]

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


def finish(run, args, sets, params, data, ctx, kv, results):
    """CV tables, out-of-fold detections, the final model, its test predictions, summary."""
    summary = {"sets": [grid.set_label(s) for s in sets]}
    best, final_epochs = 0, None
    if results:
        rows = [{"set": s, "fold": k, "params": grid.set_label(sets[s]), **sets[s],
                 "epochs": params[s].epochs, "best_epoch": r["best_epoch"],
                 "map_voc12": r["map_voc12"], "map_voc07": r["map_voc07"],
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
                               f"diverged before any validation); see cv_results.csv")
        plot_cv(run, rows)
        folds = range(len(data.splits["folds"]))
        oof = cv.merge_out_of_fold(
            [det_eval.read_detections_json(run.dir / f"set{best}_fold{k}" /
                                           "val_detections.json")[0] for k in folds],
            data.splits["train"])
        train_gt = data.ground_truth(data.splits["train"])
        write_predictions(run, "oof", oof, train_gt, data.classes)
        try:  # the detector's operating point for predict.py, chosen on OOF (not test) data
            summary["oof_f1_threshold"] = det_eval.best_f1_threshold(
                train_gt, oof, iou=0.5, offset=0)["score_threshold"]
        except ValueError as err:  # no OOF detection at all
            run.log.warning("no F1 operating point on OOF detections: %s", err)
        row = table[best]
        oof_score = score(train_gt, oof, data.classes, per_class=True)
        summary.update(cv_map_mean=row["map_voc12_mean"], cv_map_std=row["map_voc12_std"],
                       cv_map_voc07_mean=row["map_voc07_mean"], cv_table=table,
                       oof_map_voc12=oof_score["map_voc12"], oof_ap_voc12=oof_score["ap_voc12"])
        if args.final_model == "cv-median":
            final_epochs = int(round(row["best_epoch_median"])) + 1
    p = params[best]
    final = train_job(run, "final", p, data, ctx, kv, args, data.splits["train"],
                      epochs=final_epochs or p.epochs, seed=args.seed * 1000 + 999)
    if kv.rank > 0:
        return {"rank": kv.rank}
    net = yolo.build(p.network, data.classes, ctx=ctx)
    yolo.load_params(net, run.dir / "final" / "checkpoints" / "best.params", ctx)
    test_ids = data.splits["test"]
    test_gt = data.ground_truth(test_ids)
    test_det = predict_ids(net, data, test_ids, p, ctx, args)
    write_predictions(run, "test", test_det, test_gt, data.classes)
    from eval import plots
    plots.plot_metrics_csv(run.dir / "final" / "metrics.csv", run.path("plots", "final.png"),
                           title="final model")
    model = yolo.model_json(p.network, data.classes, p.data_shape,
                            "final/checkpoints/best.params")
    if summary.get("oof_f1_threshold") is not None:
        model["score_threshold"] = summary["oof_f1_threshold"]
    run.write_json("model.json", model)
    test = score(test_gt, test_det, data.classes, per_class=True)
    rand = random_baseline(data, test_gt)
    summary.update(best_set=best, best_params=grid.set_label(sets[best]),
                   final_model=args.final_model, final_epochs=final["epochs"],
                   test_map_voc12=test["map_voc12"], test_map_voc07=test["map_voc07"],
                   classes=data.classes, test_ap_voc12=test["ap_voc12"],
                   test_random_map_voc12=rand["map_voc12"],
                   test_random_map_voc07=rand["map_voc07"],
                   final_images_per_s=final["images_per_s"], param_digest=final["param_digest"])
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
