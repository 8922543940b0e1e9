"""Detector training recipes: the paper's (GPU, ImageNet backbone) and the measured CPU one.

Options left unset on the command line take the recipe's value. ``--recipe auto`` picks
``paper`` when the run has what the paper's recipe assumes (a GPU or an ImageNet backbone)
and ``cpu`` otherwise: a from-scratch run on a CPU has minutes, not days, and what learns
fastest per CPU-second there was measured on phantoms (README, "Detector on a CPU"): Adam at
6e-3, a 128 px fixed input, detection heads a quarter of the zoo's width, no random shapes,
no zoom-out, no extra augmentation (each of those cost validation mAP at equal iterations),
and the images loaded in the training process, 8 batches at a time (no loader process or
thread competing with the step for the cores, and the loader's work done in runs, on warm
caches: bench/bench_train_loop.py, README "Benchmarks").
"""
import argparse

from models import budget, ema

#: Recipe values of the options whose argparse default is None.
RECIPES = {
    # GluonCV scripts/detection/yolo/train_yolo3.py with the notes' augmentations.
    "paper": dict(optimizer="sgd", lr=1e-3, data_shape=416, batch_size=8, random_shape=True,
                  extra_augment=True, max_expand=4.0, warmup_epochs=2.0, epochs=30,
                  head_scale=1.0, num_workers=4, loader_thread=False, loader_burst=1,
                  job_processes=False),
    # Measured on phantoms from scratch on a 2-core CPU (README, ablation table): fold mAP
    # 0.27 -> 0.81 at the same 770 iterations, in less time (narrow heads).
    "cpu": dict(optimizer="adam", lr=6e-3, data_shape=128, batch_size=8, random_shape=False,
                extra_augment=False, max_expand=1.0, warmup_epochs=1.0, epochs=30,
                head_scale=0.25, num_workers=0, loader_thread=False, loader_burst=8,
                job_processes=True),
}
CHOICES = ("auto",) + tuple(RECIPES)


def choose(recipe, gpus, pretrained):
    """The recipe name for ``--recipe`` (``auto``: paper with a GPU or an ImageNet backbone)."""
    if recipe not in CHOICES:
        raise ValueError(f"--recipe must be one of {', '.join(CHOICES)}, got {recipe!r}")
    if recipe != "auto":
        return recipe
    return "paper" if (gpus or pretrained) else "cpu"


def apply(args, name):
    """Fill every option of ``args`` that is None with recipe ``name``'s value; returns the
    names filled (for the log)."""
    filled = []
    for key, value in RECIPES[name].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
            filled.append(key)
    return filled


def add_training_arguments(parser):
    """Declare train_yolo3.py's training options: --recipe and the options whose unset
    value (None) is the recipe's, then the others."""
    g = parser.add_argument_group("training (unset options take the --recipe's value)")
    g.add_argument("--recipe", choices=CHOICES, default="auto",
                   help="defaults of the options below: 'paper' (GluonCV's SGD recipe, 416 px, "
                        "random shapes, augmentation; for a GPU or --pretrained-base), 'cpu' "
                        "(measured from scratch on a CPU: Adam, 128 px, fixed shape, no "
                        "zoom-out); auto picks paper with --gpus or --pretrained-base "
                        "(default %(default)s)")
    g.add_argument("--epochs", type=int, default=None,
                   help="epochs per model (recipe: 30; --time-budget sizes it instead)")
    g.add_argument("--batch-size", type=int, default=None,
                   help="images per step, per worker (recipe: 8)")
    g.add_argument("--data-shape", type=int, default=None,
                   help="input size in pixels, multiple of 32 (recipe: paper 416, cpu 128); "
                        "with random shapes training draws sizes in [0.75, 1.5] x it")
    g.add_argument("--random-shape", action=argparse.BooleanOptionalAction, default=None,
                   help="train at random input sizes (GluonCV's; recipe: paper on, cpu off)")
    g.add_argument("--extra-augment", action=argparse.BooleanOptionalAction, default=None,
                   help="datasets.detector.augment.ExtraAugment (rotation, noise, brightness, contrast, "
                        "sharpness) before GluonCV's transform (recipe: paper on, cpu off)")
    g.add_argument("--optimizer", default=None, choices=["sgd", "adam"],
                   help="sgd with --momentum (GluonCV's recipe) or adam (recipe: cpu)")
    g.add_argument("--max-expand", type=float, default=None,
                   help="largest zoom-out of GluonCV's random expand; 4 is GluonCV's, 1 turns "
                        "it off: small lesions vanish at small input sizes (recipe: paper 4, "
                        "cpu 1)")
    g.add_argument("--head-scale", type=float, default=None,
                   help="width of the detection heads relative to the zoo network's; at small "
                        "inputs they cost most of the compute (recipe: paper 1, cpu see "
                        "models/recipes.py)")
    g = parser.add_argument_group("training")
    budget.add_time_budget_argument(g, "every model, its validations and the test "
                                       "predictions", replanned=True)
    g.add_argument("--max-side", type=int, default=-1,
                   help="shrink training images to this longer side (px) before augmenting; "
                        "-1 = the largest training input size, 0 = never (default %(default)s)")
    g.add_argument("--anchors", default="coco",
                   help="'coco': GluonCV's (default); 'auto': GluonCV's unless they cover < 98%% "
                        "of the training boxes at the input size (Ultralytics' autoanchor "
                        "rule), then k-means (1 - IoU); 'fit': always k-means; or 9 'WxH' "
                        "pairs, small to large. Fitted anchors stopped learning in every "
                        "measured run (mAP ~0; README, 'Detector on a CPU'), so they "
                        "are opt-in (default %(default)s)")
    g.add_argument("--prior-init", action=argparse.BooleanOptionalAction, default=True,
                   help="start the objectness and class biases at the training data's base "
                        "rates (RetinaNet's prior, Ultralytics' bias init) instead of 0.5; "
                        "off with --init-params (default %(default)s)")
    ema.add_decay_argument(g, "model", "with the schedule annealing to 0 it changed nothing "
                           "at the last epoch (fold mAP 0.810 with, 0.811 without)")
    g.add_argument("--wd", type=float, default=5e-4, help="weight decay (default %(default)s)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default %(default)s)")
    g.add_argument("--num-workers", type=int, default=None,
                   help="loader processes (recipe: paper 4, cpu 0: on a 2-core CPU a forked "
                        "loader's threads compete with training's, and the first model of a "
                        "process trained 2.7x slower with 1 worker than with 0)")
    g.add_argument("--loader-thread", action=argparse.BooleanOptionalAction, default=None,
                   help="with --num-workers 0 and a fixed input size, make the next batches "
                        "in one background thread of the training process while the step "
                        "computes (Gluon's thread_pool; same batches as without). Recipe: "
                        "off (cpu: bursts instead)")
    g.add_argument("--loader-burst", type=int, default=None, metavar="BATCHES",
                   help="with --num-workers 0 and no loader thread, make this many batches at "
                        "a time in the training process, then train on them (same batches "
                        "as one at a time; datasets.detector.data.BurstLoader); 1 = one "
                        "before each step. Recipe: paper 1, cpu 8 (the training loop "
                        "against its bare step: 0.935-0.970 in bursts, 0.899-0.915 one at a "
                        "time, 0.813-0.932 with the thread; README 'Benchmarks')")
    g.add_argument("--val-interval", type=int, default=1,
                   help="validate every N epochs and at the last, for the curve in metrics.csv "
                        "(default %(default)s)")
    # --lr and --warmup-epochs (models.schedules) are the recipe's too: the script sets their
    # defaults to None after declaring them.
