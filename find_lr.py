"""LR range test for the detector on one fold's training data (notes 000, Smith 2015).

The learning rate grows exponentially from --min-lr to --max-lr, one training step each
(the same step as train_yolo3.py, models/yolo_train.py), until the smoothed loss diverges.
Writes lr_range.csv and plots/lr_range.png into the run folder and prints the suggested
max LR and base_lr = max_lr / 4 (for --lr-mode triangular: --lr BASE --max-lr MAX).

    python find_lr.py --data DATA --fold 0 --network yolo3_mobilenet0.25_custom --data-shape 256
"""
import argparse
import math

from datasets.prepared import classes as class_names
from datasets.detector import data as dd
from infra import runs
from models import devices, lr_range, optim, yolo, yolo_train

SCRIPT = "find_lr"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepare_data.py output folder")
    p.add_argument("--fold", type=int, default=0,
                   help="use this fold's training ids; -1 = every training id "
                        "(default %(default)s)")
    p.add_argument("--classes", default=None,
                   help="comma-separated class names; only a check: they must equal "
                        "DATA/classes.txt (default: that file)")
    yolo.add_model_arguments(p)
    p.add_argument("--data-shape", type=int, default=320, help="input size, multiple of 32 "
                   "(default %(default)s)")
    p.add_argument("--no-random-shape", action="store_true", help="train at --data-shape only")
    p.add_argument("--batch-size", type=int, default=8,
                   help="images per step (default %(default)s)")
    p.add_argument("--wd", type=float, default=5e-4, help="weight decay (default %(default)s)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default %(default)s)")
    p.add_argument("--num-workers", type=int, default=0,
                   help="forked loader processes; 0 loads in this process, as train_yolo3.py's "
                        "CPU recipe does (one forked worker made the first model of a process "
                        "2.7x slower on 2 cores); on a GPU box try 4 (default %(default)s)")
    g = p.add_argument_group("range test")
    g.add_argument("--min-lr", type=float, default=1e-6, help="first LR (default %(default)s)")
    g.add_argument("--max-lr", type=float, default=1.0, help="last LR (default %(default)s)")
    g.add_argument("--num-iters", type=int, default=100,
                   help="steps if the loss never diverges (default %(default)s)")
    g.add_argument("--warmup-iters", type=int, default=10,
                   help="unrecorded steps at --min-lr first: YOLO's objectness loss collapses "
                        "from ~1e3 in the first steps at any LR, which would look like the "
                        "steepest descent (default %(default)s)")
    g.add_argument("--beta", type=float, default=0.98, help="loss EMA factor (default %(default)s)")
    g.add_argument("--diverge-factor", type=float, default=4.0,
                   help="stop when the smoothed loss exceeds this x its best (default %(default)s)")
    devices.add_device_arguments(p)
    runs.add_run_arguments(p, SCRIPT)
    return p.parse_args(argv)


def main(args):
    classes = class_names.data_classes(args.data, args.classes)
    ctx = devices.contexts(args.gpus)
    with runs.start(SCRIPT, args) as run:
        yolo_train.seed_all(args.seed)
        data = dd.DetectionData(args.data, classes,
                                lambda: yolo.transform_net(args.network, classes))
        ids = data.splits["train"] if args.fold < 0 else data.splits["folds"][args.fold]["train"]
        net = yolo.build(args.network, classes, args.pretrained_base, args.init_params,
                         args.focal_alpha, args.focal_gamma, ctx)
        trainer = optim.make_trainer(net, None, args.kvstore, args.wd, args.momentum,
                                     learning_rate=args.min_lr)
        subset = data.subset(ids, args.seed)
        loader = dd.train_loader(subset,
                                 data.transforms(args.data_shape, not args.no_random_shape),
                                 min(args.batch_size, len(subset)), args.num_workers,
                                 dd.SplitSampler(len(subset), seed=args.seed))
        try:
            step = yolo_train.loss_step_fn(net, trainer, yolo_train.endless(loader), ctx)
            for _ in range(args.warmup_iters):
                step(args.min_lr)
            result = lr_range.lr_range_test(step, args.min_lr, args.max_lr, args.num_iters,
                                            args.beta, args.diverge_factor)
        finally:
            dd.close_loader(loader)
        lr_range.write_lr_range_csv(run.path("lr_range.csv"), result)
        plot_lr_range(run, result)
        summary = {k: result[k] for k in ("suggested_max_lr", "suggested_base_lr",
                                          "min_loss_lr", "steepest_lr", "stopped_early",
                                          "stop_reason")}
        summary.update(steps=len(result["lrs"]), fold=args.fold, train_images=len(subset))
        run.finish(summary)
    if result["suggested_max_lr"] is not None:
        print(f"suggested max LR: {result['suggested_max_lr']:.3g}  base_lr = max/4: "
              f"{result['suggested_base_lr']:.3g}")
    else:
        print("no suggestion: the loss was never finite; lower --min-lr")
    return summary


def plot_lr_range(run, result):
    """plots/lr_range.png: raw and smoothed loss against the LR, suggestion marked."""
    from eval import plots
    if not result["lrs"] or not any(math.isfinite(v) for v in result["losses"]):
        return None
    return plots.plot_lr_range_test(result["lrs"], result["losses"],
                                    run.path("plots", "lr_range.png"),
                                    suggested_lr=result["suggested_max_lr"],
                                    smoothed=result["smoothed"])


if __name__ == "__main__":
    main(parse_args())
