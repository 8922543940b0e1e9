"""Train the YOLOv3 detector: k-fold cross-validation over a hyper-parameter grid, then the
final model of the best set, scored once on the test split.

Every set x fold model trains for the set's epochs (or what ``--time-budget`` buys) and is
scored at its last epoch, with its weight average (EMA), on its validation fold: no epoch is
chosen on the fold that reports it. The validation curve (and its best epoch, an optimistic
extra column) is still recorded. The fold models predict their validation ids, so together
they give out-of-fold detections for the whole training set; the detector's operating
threshold is the best F2 on them (``--threshold-beta``: the first stage of the two-stage
pipeline favours recall; its best F1 is kept for the detector alone). The final model (``--final-model``) is the ensemble of the
best set's fold models (their detections fused by weighted box fusion: scores stay on the
scale the threshold was chosen on, and nothing is retrained) or one model retrained on every
training id. Boxes are scored with the VOC devkit's convention (offset 1) everywhere.
Artefacts: docs/CONTRACTS.md.

    python train_yolo3.py --data DATA --grid "lr=1e-3,5e-4;epochs=30,60" --gpus 0
    python train_yolo3.py --data DATA --time-budget 30          # CPU: sized to 30 minutes
"""
import os
import time

from models import kv_server

_T_IMPORT = time.time()  # a --job-processes child pays these imports again (plan_budget)

if kv_server.is_server():  # a dist kvstore server or scheduler: serve, then exit
    kv_server.serve()

import argparse  # noqa: E402
import copy  # noqa: E402
import itertools  # noqa: E402
import logging  # noqa: E402

import numpy as np  # noqa: E402

from datasets.prepared import classes as class_names  # noqa: E402
from datasets.detector import data as dd  # noqa: E402
from datasets.detector.augment import ExtraAugment  # noqa: E402
from eval import plots  # noqa: E402
from infra import runs  # noqa: E402
from eval import detection as det_eval  # noqa: E402
from models import anchors as anchor_fit  # noqa: E402
from models import (budget, detector_cv, devices, ema, grid, jobs, optim, recipes,  # noqa: E402
                    resume, schedules, yolo, yolo_train)
from models.detector_cv import OFFSET, score  # noqa: E402
from models.epochs import fit  # noqa: E402

IMPORT_S = time.time() - _T_IMPORT

SCRIPT = "train_yolo3"
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
                               "final_model", "fusion_iou", "recipe", "time_budget",
                               "threshold_beta")
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
    recipes.add_training_arguments(p)
    schedules.add_schedule_arguments(p)
    p.set_defaults(lr=None, warmup_epochs=None)  # the recipe's (after their declaration)
    detector_cv.add_selection_arguments(p)
    jobs.add_job_arguments(p)
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="tqdm progress bars (auto: only on a terminal)")
    devices.add_device_arguments(p)
    runs.add_run_arguments(p, SCRIPT)
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(args):
    t_start = time.time()
    parser = build_parser()
    stored = resume.resume_options(args, parser, FIXED_ON_RESUME) if args.resume else None
    if stored and args.only is None and stored["options"].get("only"):
        # a run started for one job resumes that job, not the whole CV (--only is not fixed:
        # job children resume their parent's folder with their own)
        args.only = stored["options"]["only"]
    if not args.data:
        raise ValueError("--data DATA is required (a prepare_data.py output folder)")
    recipe = recipes.choose(args.recipe, args.gpus, args.pretrained_base)
    from_recipe = recipes.apply(args, recipe)
    if args.loader_thread and args.num_workers:
        if "loader_thread" not in from_recipe:
            raise ValueError("--loader-thread loads in the training process: use it with "
                             "--num-workers 0")
        # Resolved once here, so the loaders, args.json and job children see one value.
        args.loader_thread = False  # the recipe's thread stands down for loader processes
    if args.loader_burst < 1:
        raise ValueError(f"--loader-burst must be at least 1 batch, got {args.loader_burst}")
    if args.loader_burst > 1 and (args.num_workers or args.loader_thread):
        if "loader_burst" in from_recipe:
            args.loader_burst = 1  # the recipe's burst stands down for a thread or processes
        elif "loader_thread" in from_recipe and not args.num_workers:
            args.loader_thread = False  # an explicit burst replaces the recipe's thread
        else:
            raise ValueError("--loader-burst loads in the training process: use it with "
                             "--num-workers 0 and --no-loader-thread")
    sets = grid.parse_grid(args.grid, grid.grid_types(parser, GRID_KEYS))
    if args.time_budget is not None and any("epochs" in s for s in sets):
        raise ValueError("--time-budget sizes the epochs itself: drop 'epochs' from --grid")
    kv = yolo_train.KVInfo(yolo_train.create_kvstore(args.kvstore))
    classes = class_names.data_classes(args.data, args.classes)
    ctx = devices.contexts(args.gpus)
    devices.check_amp(args.amp, ctx)
    derived = {"sets": sets, "recipe": recipe, "from_recipe": from_recipe}
    with jobs.open_run(SCRIPT, args, kv, derived) as run:
        run.log.info("recipe %s for %s", recipe, ", ".join(f"{k}={getattr(args, k)}"
                                                           for k in from_recipe) or "nothing")
        data = dd.DetectionData(args.data, classes, lambda anchors=None: yolo.transform_net(
            args.network, classes, anchors))
        folds = data.splits["folds"]
        job = jobs.parse_job(args.only, len(sets), len(folds)) if args.only else None
        params = [grid.apply_set(args, dict(s, grid_overrides=s)) for s in sets]
        cv_jobs = [(s, k) for s in range(len(sets)) for k in range(len(folds))]
        plan, replan = None, None

        def record_plan(q):
            runs.record_derived(run, {"time_budget": q})

        if args.time_budget is not None:
            plan = (stored or {}).get("derived", {}).get("time_budget")  # resumed or a child
            if plan is None:
                plan = plan_budget(run, args, params, data, ctx, job, len(cv_jobs), t_start,
                                   kv)
                if args.folds_parallel <= 1 and not kv.distributed:  # sequential jobs
                    replan = budget.JobReplanner(plan, record_plan, reload=lambda: run.read_json(
                        "args.json", {}).get("derived", {}).get("time_budget"))
            for p in params:
                p.epochs = plan["epochs"]
        # a short run keeps half its epochs out of warm-up; a resumed run or a job child
        # reads the recipe's warm-up back from args.json, so the stored record says
        short_warmup = "warmup_epochs" in from_recipe + (stored or {}).get(
            "derived", {}).get("from_recipe", [])
        if short_warmup:
            for p in params:
                p.warmup_epochs = min(p.warmup_epochs, p.epochs / 2.0)
        if args.amp:
            # Train transforms run an fp32 net on the CPU: build them before amp.init (TRAPS 42).
            for p in params:
                data.transforms(p.data_shape, p.random_shape, None, p.max_expand)
            from mxnet.contrib import amp
            amp.init()

        def job_params(s, name):
            """Set ``s``'s options for job ``name``: its epochs re-planned under a budget
            (``models.budget.replan_epochs``), recorded before it trains."""
            if plan is None:
                return params[s]
            epochs = replan(name) if replan else budget.job_epochs(plan, name)
            return params[s] if epochs == params[s].epochs else with_epochs(params[s], epochs)

        def with_epochs(p, epochs):
            q = copy.copy(p)
            q.epochs = epochs
            if short_warmup:
                q.warmup_epochs = min(q.warmup_epochs, epochs / 2.0)
            return q

        def job_cut(name, p):
            """A job trains fewer epochs when its own ran slower than its share of the budget
            allows (``models.budget.cut_to_deadline``, by the deadline its ``JobReplanner``
            set: an equal share of the time left for it and each job after it, the whole rest
            for the last): so a slow stretch is paid for by the job it slows, not by the last
            fold. Only under a plan this process made, or in a job child its parent gave a
            ``--job-deadline`` (a resumed run's clock began earlier: it reads the cuts back
            from job_epochs); for sequential jobs on one worker. A fold keeps at least half
            its planned epochs (``models.budget.floor_epochs``), as between folds."""
            deadline = replan.deadlines.get(name) if replan else args.job_deadline
            if deadline is None:
                return None
            recorder = replan or budget.JobReplanner(plan, record_plan)
            # The plan's first job (nothing started before it) may raise the plan's epochs.
            first = list(plan.get("job_started_at") or {}) == [name] and \
                "raised_in_job" not in plan

            def cut(trainer, iters_per_epoch):
                def reschedule(new):
                    trainer.optimizer.lr_scheduler = schedules.build_schedule(
                        **schedules.schedule_kwargs(with_epochs(p, new)),
                        iters_per_epoch=iters_per_epoch, epochs=new)

                def on_cut(new):
                    reschedule(new)
                    recorder.cut_in_job(name, new)

                def on_raise(new, seconds_per_epoch):
                    reschedule(new)
                    recorder.raise_in_job(name, new, seconds_per_epoch)

                def make_cut(epochs):
                    return budget.cut_job(deadline, on_cut, name, plan, epochs,
                                          floored=name != "final")
                if first:
                    return budget.first_job_replan(plan, p.epochs, on_raise, make_cut, name)
                return make_cut(p.epochs)
            return cut

        def fold_job(s, k):
            name = jobs.job_name((s, k))
            p = job_params(s, name)
            return train_job(run, name, p, data, ctx, kv, args, folds[k]["train"],
                             folds[k]["val"], seed=args.seed * 1000 + k, cut=job_cut(name, p))

        def start_child(name):
            """Before a job child starts: its epochs, and the deadline it is cut by."""
            replan(name)
            return ["--job-deadline", repr(replan.deadlines[name])]

        if isinstance(job, tuple):
            return fold_job(*job)
        results = {}
        if job is None:
            if args.folds_parallel > 1 or job_processes(args, kv, len(cv_jobs)):
                jobs.run_parallel(os.path.abspath(__file__), run, args, cv_jobs,
                                  before_start=start_child if replan else None)
            for s, k in cv_jobs:
                results[s, k] = fold_job(s, k)  # done jobs are read back, not retrained
            if replan:  # a first fold that raised the plan did so in its own process
                replan.sync()
            if plan is not None:
                for p in params:
                    p.epochs = plan["epochs"]
        return finish(run, args, sets, params, data, ctx, kv, results, job_params,
                      lambda p: job_cut("final", p))


def job_processes(args, kv, n_cv_jobs):
    """Whether the CV jobs run in child processes one at a time (``--job-processes``)."""
    return bool(args.job_processes) and n_cv_jobs > 1 and not kv.distributed


def plan_budget(run, args, params, data, ctx, job, n_cv_jobs, t_start, kv):
    """Epochs per model from ``--time-budget`` and this machine's measured rates."""
    p = max(params, key=lambda q: q.data_shape)
    train_ids = data.splits["train"] if job == "final" else data.splits["folds"][0]["train"]
    startup_s = IMPORT_S + (time.time() - t_start)  # imports, run folder, data
    rates = calibrate(data, p, ctx, args, train_ids)
    if job is None and args.folds_parallel <= 1 and job_processes(args, kv, n_cv_jobs):
        rates["job_overhead_s"] += startup_s  # each child starts as this process did
    planned_at = time.time()  # budget_s counts from here (re-planning reads the clock)
    plan = budget.plan_detector(args.time_budget * 60.0 - (planned_at - t_start), rates,
                                data.splits, n_cv_jobs, job == "final",
                                job == "final" or args.final_model == "retrain",
                                args.val_interval)
    plan.update(minutes=args.time_budget, calibration_s=rates["seconds"],
                planned_at=planned_at)
    if job is None and args.folds_parallel > 1 and n_cv_jobs > 1:
        # Lanes are not planned: sequential jobs at this process's rate (README F0/F1).
        plan["folds_parallel_unplanned"] = args.folds_parallel
        run.log.warning("time budget: --folds-parallel %d: the CV jobs are planned as if "
                        "trained one at a time at the rate measured here, and are neither "
                        "re-planned nor cut; they end early where %d processes side by side "
                        "are faster than one, and can overrun the budget where they are "
                        "slower (two processes sharing one core's hyperthreads)",
                        args.folds_parallel, args.folds_parallel)
    runs.record_derived(run, {"time_budget": plan})
    return plan


def calibrate(data, p, ctx, args, train_ids, iters=20):
    """Training and prediction images/s of this machine at ``p``'s settings (a throwaway
    net; the jobs' random streams are seeded afterwards, so they do not depend on it). 20
    timed steps: 6 overestimated a 1-thread run's rate by 12-35 %, 20 by 4 %."""
    t0 = time.time()
    shapes = dd.random_shapes(p.data_shape, p.random_shape)
    transforms = data.transforms(p.data_shape, False,
                                 ExtraAugment() if p.extra_augment else None, p.max_expand)
    net = yolo.build(p.network, data.classes, ctx=ctx, head_scale=p.head_scale)
    trainer = optim.make_trainer(net, None, args.kvstore, p.wd, p.momentum,
                                 learning_rate=1e-7, optimizer=p.optimizer)
    batch = min(p.batch_size, len(train_ids))
    loader = dd.train_loader(train_subset(data, train_ids, p, 0)[0], transforms, batch,
                             args.num_workers, thread=args.loader_thread,
                             burst=args.loader_burst)
    job_overhead = time.time() - t0
    try:
        yolo_train.set_mode(net, "train", fixed_shape=not p.random_shape)
        batches = itertools.islice(yolo_train.endless(loader), iters + 2)
        rate = budget.measure_rate(lambda b: yolo_train.train_step(net, trainer, b, ctx),
                                   ((b, b[0].shape[0]) for b in batches), warmup=2)
    finally:
        dd.close_loader(loader)
    # Random shapes: compute grows with the input area; calibrated at data_shape only.
    rate *= p.data_shape ** 2 / float(np.mean(np.square(shapes)))
    yolo_train.set_mode(net, "predict", post_nms=args.top_k)
    vl = dd.val_loader(data.subset(train_ids[:3 * batch]), p.data_shape, batch, 0)
    pred = budget.measure_rate(lambda b: net(b[0].as_in_context(ctx[0]))[0].wait_to_read(),
                               ((b, b[0].shape[0]) for b in vl), warmup=1)
    return {"train_images_per_s": rate, "predict_images_per_s": pred,
            "job_overhead_s": job_overhead, "seconds": time.time() - t0}


def train_subset(data, train_ids, p, seed):
    """The training images shrunk to ``--max-side`` (-1: the largest input size), kept in
    memory when they fit ``CACHE_BYTES``; and that side."""
    max_side = max(dd.random_shapes(p.data_shape, p.random_shape)) \
        if p.max_side < 0 else p.max_side
    return data.subset(train_ids, seed, max_side, cache=data.cache_bytes(
        train_ids, max_side) <= CACHE_BYTES), max_side


def build_job(name, p, data, ctx, kv, args, train_ids, seed):
    """Data, model and trainer of one job. The transforms come first (built once per
    process, drawing random numbers the first time), so a job's random stream is the same
    whether it runs first, later, or in its own process."""
    extra = ExtraAugment() if p.extra_augment else None
    gt, sizes = data.ground_truth(train_ids, with_sizes=True)
    anchors = anchor_fit.choose_anchors(p.anchors, anchor_fit.boxes_at_input(
        [gt[i]["boxes"] for i in train_ids], [sizes[i] for i in train_ids], p.data_shape),
        p.data_shape)
    transforms = data.transforms(p.data_shape, p.random_shape, extra, p.max_expand, anchors)
    yolo_train.seed_all(seed)
    net = yolo.build(p.network, data.classes, p.pretrained_base, p.init_params, p.focal_alpha,
                     p.focal_gamma, ctx, anchors=anchors, head_scale=p.head_scale)
    if p.prior_init and not p.init_params:
        per_image = np.mean([np.sum(~g["difficult"]) for g in gt.values()])
        yolo.init_output_priors(net, per_image, p.data_shape, 0.6 / len(data.classes))
    train_set, max_side = train_subset(data, train_ids, p, seed)
    sampler = dd.SplitSampler(len(train_set), kv.num_workers, kv.rank, seed)
    batch = min(p.batch_size, len(sampler))
    ipe = len(sampler) // batch
    trainer, sched = optim.scheduled_trainer(net, schedules.schedule_kwargs(p), ipe, p.epochs,
                                             p.optimizer, p.wd, p.momentum,
                                             kv.kv or args.kvstore, args.amp)
    average = ema.for_run(net, p.ema_decay, ipe * p.epochs)
    loader = dd.train_loader(train_set, transforms, batch, args.num_workers, sampler,
                             thread=args.loader_thread, burst=args.loader_burst)
    log.info("%s: %d training images (%d on this worker), batch %d, %d iterations/epoch, "
             "%d epochs, max side %s, anchors %s, %s", name, len(train_set), len(sampler),
             batch, ipe, p.epochs, max_side, anchors or "coco", sched)
    return net, trainer, sched, average, loader, sampler, {
        "anchors": anchors, "iters_per_epoch": ipe, "batch": batch,
        "schedule": schedules.schedule_kwargs(p)}


def train_job(run, name, p, data, ctx, kv, args, train_ids, val_ids=None, seed=0, cut=None):
    """Train one model (a set x fold, or the retrained final one); returns its result dict.

    Rank 0 records and checkpoints through ``models.epochs.fit`` (resuming from the job's
    last checkpoint); other dist workers only step. The model is the last epoch's weight
    average, ``checkpoints/model.params``; with ``val_ids`` it predicts them
    (``val_detections.json``) and its score there is the job's result. ``cut(trainer,
    iters_per_epoch)``: ``fit``'s ``replan`` (a time budget's cut inside the job); the
    result's ``epochs`` are those trained.
    """
    job = run.subrun(name) if kv.rank == 0 else None
    if job is not None and (job.dir / "done.json").exists():
        return job.read_json("done.json")
    t0 = time.time()
    net, trainer, sched, average, loader, sampler, info = build_job(
        name, p, data, ctx, kv, args, train_ids, seed)
    gt = data.ground_truth(val_ids) if val_ids else None
    # One validation loader per job (gluon's DataLoader runs gc.collect() in __init__).
    vloader = dd.val_loader(data.subset(val_ids), p.data_shape, p.batch_size, 0) if gt else None
    progress = {"auto": None, "on": True, "off": False}[args.progress]

    def train_epoch(epoch):
        sampler.set_epoch(epoch)
        row = yolo_train.train_epoch(net, trainer, loader, ctx, epoch, kv.num_workers,
                                     args.amp, progress, desc=name, ema=average,
                                     fixed_shape=not p.random_shape)
        if kv.distributed:
            # The schedule runs on the servers; trainer.learning_rate is the worker's stale
            # copy (MXNET_TRAPS 36). Report the schedule's LR at the epoch's last update.
            row["lr"] = sched.lr_at((epoch + 1) * info["iters_per_epoch"] - 1)
        row.update(map_voc12=None, map_voc07=None)  # fixes the CSV columns on epoch 0
        return row

    def predict_val():
        dets = yolo_train.predict(net, vloader, ctx, args.score_thresh, args.top_k)
        return dict(zip(val_ids, dets))

    def validate(epoch):
        if gt is None:
            return {"map_voc12": None, "map_voc07": None}
        with ema.averaged(average):
            return score(gt, predict_val(), data.classes)

    try:
        if job is None:  # a dist worker of rank > 0
            for epoch in range(p.epochs):
                train_epoch(epoch)
            log.info("%s rank %d: param digest %s", name, kv.rank, yolo_train.param_digest(net))
            return None
        out = fit(job, net, trainer, p.epochs, train_epoch, validate, None, resume=True,
                  val_interval=args.val_interval, extra_state={"seed": seed, "job": name},
                  ema=average, diverged_ok=gt is not None,  # a diverged fold is a CV result
                  replan=cut(trainer, info["iters_per_epoch"]) if cut else None)
    finally:
        dd.close_loader(loader)
    if out["epochs"] != p.epochs:  # cut by the time budget
        p = copy.copy(p)
        p.epochs = out["epochs"]
    result = dict(detector_cv.job_record(name, p, out["history"], out["diverged"]),
                  seconds=time.time() - t0, **info)
    if out["diverged"]:
        result.update(map_voc12=0.0, map_voc07=0.0, param_digest=None, model_digest=None)
    else:  # the trained weights (equal on every dist worker) and the model (their average)
        result["param_digest"] = yolo_train.param_digest(net)
        with ema.averaged(average):
            result["model_digest"] = yolo_train.param_digest(net)
            if gt is not None:
                dets = predict_val()
                det_eval.write_detections_json(job.path("val_detections.json"), dets,
                                               data.classes)
                result.update(score(gt, dets, data.classes))
    job.write_json("done.json", result)
    log.info("%s done: %s", name, {k: v for k, v in result.items() if k not in (
        "param_digest", "model_digest", "anchors", "schedule")})
    return result


def finish(run, args, sets, params, data, ctx, kv, results, job_params=None, final_cut=None):
    """CV tables, out-of-fold detections, the final model, its test predictions, summary.
    ``job_params(set, name)``: a job's options (default ``params[set]``); ``final_cut(p)``:
    the retrained final model's ``train_job`` ``cut`` for options ``p`` (or None)."""
    job_params = job_params or (lambda s, name: params[s])
    summary = {"run": str(run.dir), "sets": [grid.set_label(s) for s in sets], "offset": OFFSET}
    best, n_folds = 0, len(data.splits["folds"])
    train_gt = data.ground_truth(data.splits["train"])
    if results:
        best, table = detector_cv.cv_tables(run, sets, results)
        row = table[best]
        summary.update(cv_map_mean=row["map_voc12_mean"], cv_map_std=row["map_voc12_std"],
                       cv_map_voc07_mean=row["map_voc07_mean"], cv_table=table)
        summary.update(detector_cv.out_of_fold(run, best, n_folds, data.splits["train"],
                                               train_gt, data.classes, args.threshold_beta))
    p = params[best]
    final_model = args.final_model if results else "retrain"
    if final_model == "retrain":
        fp = job_params(best, "final")
        final = train_job(run, "final", fp, data, ctx, kv, args, data.splits["train"],
                          seed=args.seed * 1000 + 999, cut=final_cut(fp) if final_cut else None)
        if kv.rank > 0:
            return {"rank": kv.rank}
        members = ["final/checkpoints/model.params"]
        summary.update(final_epochs=final["epochs"], final_images_per_s=final["images_per_s"],
                       param_digest=final["param_digest"], model_digest=final["model_digest"])
        plots.plot_metrics_csv(run.dir / "final" / "metrics.csv", run.path("plots", "final.png"),
                               title="final model")
    else:
        members = [f"{jobs.job_name((best, k))}/checkpoints/model.params"
                   for k in range(n_folds)]
    model = yolo.model_json(p.network, data.classes, p.data_shape, members, OFFSET,
                            args.fusion_iou, p.head_scale)
    if summary.get("oof_threshold") is not None:
        model["score_threshold"] = summary["oof_threshold"]
        model["threshold_rule"] = f"best F{args.threshold_beta:g} on out-of-fold detections"
    run.write_json("model.json", model)
    nets, _ = yolo.load_model_json(run.dir / "model.json", ctx)
    test_ids = data.splits["test"]
    test_gt, sizes = data.ground_truth(test_ids, with_sizes=True)
    loader = dd.val_loader(data.subset(test_ids), p.data_shape, p.batch_size, 0)
    test_det = dict(zip(test_ids, yolo_train.predict_models(
        nets, loader, ctx, args.score_thresh, args.top_k, args.fusion_iou)))
    summary.update(best_set=best, best_params=grid.set_label(sets[best]),
                   final_model=final_model, members=members, epochs=p.epochs,
                   classes=data.classes)
    if results:  # what each fold of the chosen set trained (fewer if a budget re-planned it)
        summary["fold_epochs"] = [results[best, k]["epochs"] for k in range(n_folds)]
    summary.update(detector_cv.test_report(run, test_det, test_gt, train_gt, sizes,
                                           data.classes))
    return run.finish(summary)


if __name__ == "__main__":
    main(parse_args())
