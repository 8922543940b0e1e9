"""Images/s of the real detector training loop against bare forward/backward/step.

Real loop: as train_yolo3.py runs it with a recipe (default the CPU one): images decoded
once and kept in memory, the recipe's augmentation (GluonCV's YOLOv3 train transform with
its targets; ExtraAugment and the 4x zoom-out in the paper recipe), batchify, loader workers,
then ``models.yolo_train.train_step``. Baseline: the
same ``train_step`` on batches made beforehand. Same net, input size and batch, one fixed
input size for both (random shapes would make the two differ in compute). The loop is
measured loading in the training process one batch before each step (0) and ``--burst``
batches at a time (burst: the CPU recipe's default, ``train_yolo3.py --loader-burst``), in
one background thread of it (thread) and with 1 and 2 loader processes, each right after a
bare measurement (paired, so the machine's drift cancels); loading in the training process,
which has no prefetch queue, is paired chunk by chunk (``--chunk`` steps of each, in turn).
The last line is the best median ratio.

    python bench/bench_train_loop.py [--data DATA] [--network yolo3_mobilenet0.25_custom]
        [--recipe cpu|paper] [--data-shape S] [--batch-size B] [--iters 64]
        [--workers 0,thread,1,2] [--crop sampled|gluoncv] [--min-ratio 0.9]
"""
import argparse
import itertools
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import infra.openmp  # noqa: E402,F401  (OpenMP's defaults before mxnet loads)
import numpy as np  # noqa: E402
import mxnet as mx  # noqa: E402

from datasets.detector import data as dd  # noqa: E402
from datasets.detector.augment import ExtraAugment  # noqa: E402
from datasets.prepared.classes import data_classes  # noqa: E402
from infra.cpus import usable_cpus  # noqa: E402
from models import optim, recipes, schedules, yolo, yolo_train  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="prepared DATA folder (default: a synthetic one)")
    p.add_argument("--network", default="yolo3_mobilenet0.25_custom", choices=yolo.NETWORKS)
    p.add_argument("--recipe", choices=sorted(recipes.RECIPES), default="cpu",
                   help="train_yolo3.py recipe whose augmentation the loop runs (default "
                        "%(default)s, what a CPU run gets)")
    p.add_argument("--data-shape", type=int, default=None,
                   help="input size (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None, help="(default: the recipe's)")
    # 64, not fewer: a loader with workers or a thread fills its 2-batch prefetch queue during
    # the warm-up, and those batches come free in the timed window (+2 points of ratio at 16).
    p.add_argument("--iters", type=int, default=64, help="timed iterations per measurement "
                   "(default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    p.add_argument("--workers", default="0,burst,thread,1,2",
                   help="loaders to measure: loader process counts (0 = in the training "
                        "process, one batch before each step), 'burst' (in the training "
                        "process, --burst batches at a time) and 'thread' (one background "
                        "thread of it)")
    p.add_argument("--burst", type=int, default=8,
                   help="batches a 'burst' loader makes at a time (default: %(default)s)")
    p.add_argument("--max-side", type=int, default=-1,
                   help="shrink images before augmenting as train_yolo3.py does "
                        "(-1 = --data-shape, 0 = never)")
    p.add_argument("--repeats", type=int, default=5,
                   help="paired measurements per setting (median of the ratios)")
    p.add_argument("--no-cache", action="store_true",
                   help="decode every image every epoch (train_yolo3.py keeps them in memory "
                        "when they fit)")
    p.add_argument("--min-ratio", type=float, default=None,
                   help="exit with status 1 when the best ratio is below this")
    p.add_argument("--crop", choices=("sampled", "gluoncv"), default="sampled",
                   help="constrained crop: drawn from GluonCV's distribution (train_yolo3.py's) "
                        "or with GluonCV's exact draws, 300 crops an image (default "
                        "%(default)s)")
    p.add_argument("--chunk", type=int, default=8,
                   help="loading in the training process (0) is timed in chunks of this many "
                        "steps alternating with the bare step, bare-loop then loop-bare, so "
                        "both sides sample the same moments of a machine whose speed moves "
                        "within seconds; 0 = whole windows like the prefetching loaders, "
                        "whose queue would fill while the bare step is timed (default "
                        "%(default)s)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for key in ("data_shape", "batch_size"):
        if getattr(args, key) is None:
            setattr(args, key, recipes.RECIPES[args.recipe][key])
    return args


def bare_rate(net, trainer, batches, ctx, warmup):
    for b in batches[:warmup]:
        yolo_train.train_step(net, trainer, b, ctx)
    mx.nd.waitall()
    t0 = time.time()
    n = 0
    for b in batches[warmup:]:
        yolo_train.train_step(net, trainer, b, ctx)
        n += b[0].shape[0]
    mx.nd.waitall()
    return n / (time.time() - t0)


def loop_rate(net, trainer, loader, ctx, warmup, iters):
    it = yolo_train.endless(loader)
    for _ in range(warmup):
        yolo_train.train_step(net, trainer, next(it), ctx)
    mx.nd.waitall()
    t0 = time.time()
    n = 0
    for _ in range(iters):
        b = next(it)
        yolo_train.train_step(net, trainer, b, ctx)
        n += b[0].shape[0]
    mx.nd.waitall()
    return n / (time.time() - t0)


def chunked_rates(net, trainer, batches, loader, ctx, warmup, iters, chunk):
    """Bare and in-process-loading rates measured in alternating ``chunk``-step pieces (ABBA
    order, time summed per side): a loader without a prefetch queue does no work between
    chunks, so chunking biases neither side. Returns ``(bare, loop)`` images/s."""
    it = yolo_train.endless(loader)
    bare = itertools.cycle(batches[warmup:])
    for b in batches[:warmup]:
        yolo_train.train_step(net, trainer, b, ctx)
        yolo_train.train_step(net, trainer, next(it), ctx)
    if isinstance(loader, dd.BurstLoader):
        # to the epoch's end, where a burst starts: no batch loaded in the warm-up is timed
        for _ in range(-warmup % len(loader)):
            yolo_train.train_step(net, trainer, next(it), ctx)
    seconds, images = [0.0, 0.0], [0, 0]
    for c in range(max(1, iters // chunk)):
        for side in ((0, 1) if c % 2 == 0 else (1, 0)):
            mx.nd.waitall()
            t0 = time.time()
            for _ in range(chunk):
                b = next(bare) if side == 0 else next(it)
                yolo_train.train_step(net, trainer, b, ctx)
                images[side] += b[0].shape[0]
            mx.nd.waitall()
            seconds[side] += time.time() - t0
    return images[0] / seconds[0], images[1] / seconds[1]


def main(args):
    yolo_train.seed_all(args.seed)
    print(f"mxnet {mx.__version__}, cpus {os.cpu_count()} ({usable_cpus()} usable), "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, network {args.network}, shape "
          f"{args.data_shape}, batch {args.batch_size}, iters {args.iters}, max side "
          f"{args.max_side}, recipe {args.recipe}, crop {args.crop}")
    if args.data is not None:
        return measure(args, args.data)
    from tests.yolo_fixtures import make_detection_data
    with tempfile.TemporaryDirectory(prefix="bench_train_loop_") as data_dir:
        make_detection_data(data_dir, n=32, n_test=0, k=2, seed=args.seed,
                            sizes=((400, 480), (440, 520), (380, 460)))  # ~ phantom halves
        return measure(args, data_dir)


def measure(args, data_dir):
    classes = data_classes(data_dir)
    data = dd.DetectionData(data_dir, classes,
                            lambda anchors=None: yolo.transform_net(args.network, classes,
                                                                    anchors))
    ids = data.splits["train"]
    ctx = [mx.cpu()]
    recipe = recipes.RECIPES[args.recipe]
    # The recipe's network and optimizer: the narrow heads change what a step costs.
    net = yolo.build(args.network, classes, ctx=ctx, head_scale=recipe["head_scale"])
    sched = schedules.build_schedule("constant", 1e-4, 1, 1)
    trainer = optim.make_trainer(net, sched, optimizer=recipe["optimizer"])
    # As train_yolo3.py plans it: one graph for the recipe's fixed training shape.
    yolo_train.set_mode(net, "train", fixed_shape=not recipe["random_shape"])
    extra = ExtraAugment() if recipe["extra_augment"] else None
    transforms = data.transforms(args.data_shape, False, extra, recipe["max_expand"],
                                 crop=args.crop)
    max_side = args.data_shape if args.max_side < 0 else args.max_side
    subset = data.subset(ids, args.seed, max_side, cache=not args.no_cache)
    n_batches = args.warmup + args.iters
    pre = dd.train_loader(subset, transforms, args.batch_size, 0)
    batches = []
    while len(batches) < n_batches:
        batches += list(pre)
    batches = batches[:n_batches]
    t0 = time.time()
    for _ in range(args.repeats):
        for b in pre:
            pass
    n_img = args.repeats * (len(subset) // args.batch_size) * args.batch_size
    print(f"loader alone (0 workers, no training): {n_img / (time.time() - t0):.1f} img/s")
    workers = [v.strip() if v.strip() in ("thread", "burst") else int(v)
               for v in args.workers.split(",") if v.strip()]
    # no prefetch between chunks: a burst loader makes its batches inside the chunk
    chunked = {w for w in workers if w in (0, "burst") and args.chunk > 0}
    bare, own_bare, loops = [], {w: [] for w in chunked}, {w: [] for w in workers}
    # Paired: each repeat times the bare step and then every loop right after it, so a
    # machine that speeds up or slows down between repeats (shared hosts do) moves both
    # sides of a ratio alike; the ratio reported is the median of the per-repeat ratios.
    # In-process loading is paired more tightly still, chunk by chunk (chunked_rates).
    for _ in range(args.repeats):
        if set(workers) - chunked:
            bare.append(bare_rate(net, trainer, batches, ctx, args.warmup))
        for w in workers:
            loader = dd.train_loader(subset, transforms, args.batch_size,
                                     w if isinstance(w, int) else 0, thread=w == "thread",
                                     burst=args.burst if w == "burst" else 1)
            try:
                if w in chunked:
                    b, loop = chunked_rates(net, trainer, batches, loader, ctx, args.warmup,
                                            args.iters, args.chunk)
                    own_bare[w].append(b)
                    loops[w].append(loop)
                else:
                    loops[w].append(loop_rate(net, trainer, loader, ctx, args.warmup,
                                              args.iters))
            finally:
                dd.close_loader(loader)
    if bare:
        print(f"bare forward/backward/step: {np.median(bare):.2f} img/s "
              f"(runs {np.round(bare, 2).tolist()})")
    best = (0.0, None)
    for w in workers:
        paired = own_bare.get(w, bare)
        ratios = np.array(loops[w]) / np.array(paired)
        med = float(np.median(ratios))
        per_epoch = len(subset) // args.batch_size  # a burst never crosses an epoch's end
        label = {"thread": "a loader thread",
                 "burst": f"in process, --burst {args.burst} ({min(args.burst, per_epoch)} "
                          f"batches at a time here)"}.get(w, f"{w} worker(s)")
        how = f", in {args.chunk}-step chunks against bare {np.median(paired):.2f} img/s" \
            if w in chunked else ""
        print(f"real loop, {label}{how}: {np.median(loops[w]):.2f} img/s, ratio {med:.3f} "
              f"(runs {np.round(loops[w], 2).tolist()}, ratios {np.round(ratios, 3).tolist()})")
        if med > best[0]:
            best = (med, w)
    print(f"best: {best[1]}")
    print(f"ratio: {best[0]:.3f}")
    if args.min_ratio is not None and best[0] < args.min_ratio:
        sys.exit(1)
    return best


if __name__ == "__main__":
    main(parse_args())
