"""Test mAP of train_yolo3.py's pipeline against a bare GluonCV loop, at the same iterations.

Issue 10: the pipeline's defaults must not learn slower per iteration than GluonCV's own
training loop. Pipeline: ``train_yolo3.main`` in this process with ``--only final`` and only
the options a user passes (data, network, epochs, seed, CPU, run folder); whatever it adds
(its recipe, fitted anchors, EMA, capped zoom-out, image shrinking, numpy targets) is what is
measured. Baseline: a plain loop in the style of GluonCV's
``scripts/detection/yolo/train_yolo3.py`` -- its stock ``YOLO3DefaultTrainTransform`` (COCO
anchors, 4x random expand, its target generator), ``DataLoader`` with its batchify, the four
losses summed, one backward, ``trainer.step(batch_size)`` -- on the same records and train
ids, with the network of ``gluoncv.model_zoo.get_model``, the seed train_yolo3.py gives its
final model (so both start from the same weights, checked), the pipeline's resolved data
shape, batch size, optimizer, LR schedule (checked against the pipeline's metrics.csv) and
exactly as many iterations. Both are scored on the test ids with ``eval.detection.evaluate``
(VOC12, offset 1) after GluonCV's val transform; the pipeline's own detections are re-scored
that way and must give its summary's number.

    python bench/bench_learning.py [--data DATA | --phantom dual|single --num 80]
        [--network yolo3_mobilenet0.25_custom] [--epochs 30] [--seed 0] [--min-ratio 1]

Last line: ``ratio: X`` (pipeline mAP / bare mAP; inf when only the bare loop scores 0, nan
when both do). Walls: the pipeline's final job (its done.json: transforms, anchors, net,
steps, saving) and the bare loop's transform, loader and steps; data generation and test
predictions are left out. One seed is one draw of a from-scratch run: repeat with other
--seed values before reading much into a ratio near 1.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import infra.openmp  # noqa: E402,F401  (OpenMP's defaults before mxnet loads)
import mxnet as mx  # noqa: E402

import train_yolo3  # noqa: E402
from datasets.prepared import classes as class_names  # noqa: E402
from datasets.detector import data as dd  # noqa: E402
from eval import detection as det_eval  # noqa: E402
from infra.cpus import usable_cpus  # noqa: E402
from infra.runs import MetricsCSV  # noqa: E402
from models import schedules, yolo, yolo_train  # noqa: E402

OFFSET = 1  # train_yolo3.py's box convention for every score


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None,
                   help="prepared DATA folder (default: a phantom generated and prepared in "
                        "--work, see --phantom)")
    p.add_argument("--phantom", choices=("dual", "single"), default="dual",
                   help="without --data: dual-panel screenshots, or --single-panel pictures "
                        "prepared with --no-crop --no-split (default %(default)s)")
    p.add_argument("--num", type=int, default=80,
                   help="without --data: phantom pictures to draw (default %(default)s)")
    p.add_argument("--network", default="yolo3_mobilenet0.25_custom", choices=yolo.NETWORKS)
    p.add_argument("--epochs", type=int, default=30,
                   help="epochs of the pipeline run; the bare loop runs as many iterations "
                        "(default %(default)s, a few minutes on 2 quiet cores)")
    p.add_argument("--seed", type=int, default=0, help="train_yolo3.py --seed (default 0)")
    p.add_argument("--work", default=None,
                   help="folder for the phantom and the pipeline's run folder, kept (default: "
                        "a temporary folder, removed at the end)")
    p.add_argument("--min-ratio", type=float, default=None,
                   help="exit with status 1 when pipeline mAP / bare mAP is below this (or nan)")
    return p.parse_args(argv)


def versions():
    import importlib.metadata

    import cv2
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    # the distribution's version, as env.json records it (the module says 0.11.0 for 0.10.5)
    return (f"python {platform.python_version()}, mxnet {mx.__version__}, gluoncv "
            f"{importlib.metadata.version('gluoncv')}, numpy {np.__version__}, opencv "
            f"{cv2.__version__}; cpu "
            f"{cpu}, {os.cpu_count()} cores ({usable_cpus()} usable), "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")


def make_phantom_data(work, kind, num, seed):
    """Generate ``num`` phantom pictures and prepare them (prepare_data's defaults)."""
    import prepare_data
    from datasets.phantom import generator as phantom
    raw, data = Path(work) / "raw", Path(work) / "data"
    phantom.generate(raw, num, seed=seed, progress=False, single_panel=kind == "single")
    extra = ["--no-crop", "--no-split"] if kind == "single" else []
    prepare_data.main(prepare_data.parse_args(["--raw", str(raw), "--out", str(data),
                                               "--seed", str(seed), "--no-progress", *extra]))
    return data


def run_pipeline(data_dir, network, epochs, seed, out):
    """train_yolo3.py --only final with its defaults; its score, options and iterations."""
    argv = ["--data", str(data_dir), "--network", network, "--epochs", str(epochs),
            "--seed", str(seed), "--gpus", "", "--out", str(out), "--progress", "off",
            "--only", "final"]
    summary = train_yolo3.main(train_yolo3.parse_args(argv))
    run_dir = Path(summary["run"])
    record = json.loads((run_dir / "args.json").read_text(encoding="utf-8"))
    done = json.loads((run_dir / "final" / "done.json").read_text(encoding="utf-8"))
    rows = MetricsCSV(run_dir / "final" / "metrics.csv").rows()
    return {"map": float(summary["test_map_voc12"]), "seconds": float(done["seconds"]),
            "iterations": sum(int(r["iters"]) for r in rows),
            "loss": sum(float(rows[-1][n]) for n in yolo_train.LOSS_NAMES),
            "epoch_iters": [int(r["iters"]) for r in rows],
            "epoch_lr": [float(r["lr"]) for r in rows], "anchors": done.get("anchors"),
            "schedule": done["schedule"], "options": record["options"],
            "derived": record["derived"], "dir": run_dir}


def resolved_schedule(pipe, iters_per_epoch):
    """The pipeline's LR schedule (its final job's done.json) and a one-line description;
    :func:`check_schedule` proves it against the LR the pipeline logged."""
    kwargs, epochs = pipe["schedule"], pipe["options"]["epochs"]
    sched = schedules.build_schedule(**kwargs, iters_per_epoch=iters_per_epoch, epochs=epochs)
    text = (f"{kwargs['mode']} lr {kwargs['base_lr']:g}, warm-up {sched.warmup_iters} of "
            f"{iters_per_epoch * epochs} iterations")
    return sched, text


def check_schedule(sched, pipe):
    """The schedule must give the LR the pipeline logged at the end of every epoch."""
    done = np.cumsum(pipe["epoch_iters"])
    for epoch, (n, lr) in enumerate(zip(done, pipe["epoch_lr"])):
        mine = sched.lr_at(n - 1)  # the LR of the epoch's last update
        if abs(mine - lr) > 1e-5 * max(abs(lr), 1e-12):  # metrics.csv keeps 6 digits
            raise SystemExit(f"bare schedule {sched!r} gives lr {mine:.6g} after {n} "
                             f"iterations (epoch {epoch}), the pipeline logged {lr:.6g}; "
                             f"the bare loop would not train as the pipeline did")


def build_bare_net(network, classes, seed, ctx, head_scale=1.0):
    """GluonCV's model-zoo network (with the pipeline's head width, the same network),
    initialised as train_yolo3.py initialises its own."""
    yolo_train.seed_all(seed)
    net = yolo.zoo_network(network, classes, False, head_scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.initialize(ctx=ctx)
    # Deferred initialisation draws the weights at the first forward: do it now, at the
    # point of the random stream where models.yolo.build does.
    net(mx.nd.zeros((1, 3, 64, 64), ctx=ctx[0]))
    return net


def train_bare(net, data, train_ids, options, sched, iterations, seed, ctx):
    """GluonCV's train_yolo3.py loop for ``iterations`` steps.

    Returns
    -------
    dict
        ``seconds`` (wall, transform built to last step), ``iterations`` (the optimizer's
        update count), ``loss`` (mean summed loss per image over the last epoch's worth of
        steps).
    """
    from gluoncv.data.batchify import Pad, Stack, Tuple
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
    from mxnet import autograd, gluon

    t0 = time.perf_counter()
    shape, batch_size = options["data_shape"], min(options["batch_size"], len(train_ids))
    transform = YOLO3DefaultTrainTransform(shape, shape, net, mixup=False)
    batchify = Tuple(*([Stack() for _ in range(6)] + [Pad(axis=0, pad_val=-1)]))
    loader = gluon.data.DataLoader(data.subset(train_ids, seed).transform(transform),
                                   batch_size, True, batchify_fn=batchify,
                                   last_batch="rollover", num_workers=options["num_workers"])
    opt = {"wd": options["wd"], "lr_scheduler": sched}
    if options["optimizer"] == "sgd":
        opt["momentum"] = options["momentum"]
    trainer = gluon.Trainer(net.collect_params(), options["optimizer"], opt, kvstore="local")
    net.hybridize()
    losses = []
    try:
        while len(losses) < iterations:
            for batch in loader:
                if len(losses) == iterations:
                    break
                x = gluon.utils.split_and_load(batch[0], ctx_list=ctx, batch_axis=0)
                targets = [gluon.utils.split_and_load(batch[i], ctx_list=ctx, batch_axis=0)
                           for i in range(1, 6)]
                gt_boxes = gluon.utils.split_and_load(batch[6], ctx_list=ctx, batch_axis=0)
                sums = []
                with autograd.record():
                    for k, xk in enumerate(x):
                        obj, center, scale, cls = net(xk, gt_boxes[k], *[t[k] for t in targets])
                        sums.append(obj + center + scale + cls)
                    autograd.backward(sums)
                trainer.step(batch[0].shape[0])
                losses.append(sum(float(v.sum().asscalar()) for v in sums) / batch[0].shape[0])
    finally:
        dd.close_loader(loader)
    mx.nd.waitall()
    per_epoch = max(1, iterations // max(1, options["epochs"]))
    return {"seconds": time.perf_counter() - t0, "iterations": trainer.optimizer.num_update,
            "loss": float(np.mean(losses[-per_epoch:])) if losses else float("nan")}


def score_test(data, classes, dets):
    """VOC12 mAP on the test ids, images in id order as train_yolo3.py scores them."""
    gt = data.ground_truth(data.splits["test"])
    gt = {i: gt[i] for i in sorted(gt)}
    return float(det_eval.evaluate(gt, dets, classes, iou=0.5, offset=OFFSET)["map_voc12"])


def compare(args, data_dir, pipe):
    """The bare loop at the pipeline's resolved settings: checks, training, test score."""
    opts = pipe["options"]
    classes = class_names.data_classes(data_dir)
    data = dd.DetectionData(data_dir, classes, make_transform_net=None)
    train_ids, test_ids = data.splits["train"], data.splits["test"]
    batch = min(opts["batch_size"], len(train_ids))
    sched, sched_text = resolved_schedule(pipe, len(train_ids) // batch)
    check_schedule(sched, pipe)
    ctx = [mx.cpu()]
    seed = opts["seed"] * 1000 + 999  # the seed train_yolo3.py gives its final model
    yolo_train.seed_all(seed)
    start = yolo_train.param_digest(yolo.build(args.network, classes, ctx=ctx,
                                               head_scale=opts.get("head_scale", 1.0)))
    head_scale = opts.get("head_scale", 1.0)
    net = build_bare_net(args.network, classes, seed, ctx, head_scale)
    if yolo_train.param_digest(net) != start:
        raise SystemExit("the bare net does not start from the weights models.yolo.build "
                         "gives the pipeline at the same seed; the comparison would mix "
                         "initialisation luck into it")
    pipe_dets, _ = det_eval.read_detections_json(pipe["dir"] / "test_detections.json")
    if abs(score_test(data, classes, pipe_dets) - pipe["map"]) > 1e-9:
        raise SystemExit("re-scoring the pipeline's test detections does not give its "
                         "summary's test_map_voc12: the two sides would not be scored alike")
    max_side = max(dd.random_shapes(opts["data_shape"], opts["random_shape"])) \
        if opts["max_side"] < 0 else opts["max_side"]
    print(f"resolved (both sides): recipe {pipe['derived'].get('recipe')}, data shape "
          f"{opts['data_shape']}, batch {batch}, {opts['optimizer']} wd {opts['wd']}, "
          f"{sched_text}, {opts['num_workers']} loader worker(s), {len(train_ids)} train / "
          f"{len(test_ids)} test ids, initial weights sha1 {start[:12]}")
    print(f"pipeline only: anchors {'fitted' if pipe['anchors'] else 'coco'}, ema "
          f"{opts['ema_decay']}, max expand {opts['max_expand']:g}, extra augment "
          f"{opts['extra_augment']}, random shape {opts['random_shape']}, max side {max_side}, "
          f"numpy targets")
    sys.stdout.flush()
    result = train_bare(net, data, train_ids, opts, sched, pipe["iterations"], seed, ctx)
    loader = dd.val_loader(data.subset(test_ids), opts["data_shape"], opts["batch_size"], 0)
    dets = dict(zip(test_ids, yolo_train.predict(net, loader, ctx, opts["score_thresh"],
                                                 opts["top_k"])))
    result["map"] = score_test(data, classes, dets)
    return result


def main(args):
    print(f"settings: data {args.data or f'{args.phantom}-panel phantom, {args.num} pictures'}, "
          f"network {args.network}, epochs {args.epochs}, seed {args.seed}, pipeline "
          f"train_yolo3.py --only final with its defaults")
    print(f"versions: {versions()}")
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix="bench_learning_") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        data_dir = args.data or make_phantom_data(work, args.phantom, args.num, args.seed)
        pipe = run_pipeline(data_dir, args.network, args.epochs, args.seed, work / "runs")
        bare = compare(args, data_dir, pipe)
    print(f"pipeline: mAP VOC12 {pipe['map']:.4f}, wall {pipe['seconds']:.1f} s, iterations "
          f"{pipe['iterations']}, last-epoch loss {pipe['loss']:.3f}")
    print(f"bare: mAP VOC12 {bare['map']:.4f}, wall {bare['seconds']:.1f} s, iterations "
          f"{bare['iterations']}, last-epoch loss {bare['loss']:.3f}")
    ratio = pipe["map"] / bare["map"] if bare["map"] > 0 else \
        (float("inf") if pipe["map"] > 0 else float("nan"))
    print(f"ratio: {ratio:.3f}")
    if args.min_ratio is not None and not ratio >= args.min_ratio:
        sys.exit(1)
    return {"pipeline": pipe, "bare": bare, "ratio": ratio}


if __name__ == "__main__":
    main(parse_args())
