"""Detector training recipes: the paper's (GPU, ImageNet backbone) and the measured CPU one.

Options left unset on the command line take the recipe's value. ``--recipe auto`` picks
``paper`` when the run has what the paper's recipe assumes (a GPU or an ImageNet backbone)
and ``cpu`` otherwise: a from-scratch run on a CPU has minutes, not days, and what learns
fastest per CPU-second there was measured on phantoms (README, "Detector on a CPU"): Adam,
small fixed input size, no random shapes, no zoom-out, no extra augmentation.
"""

#: Recipe values of the options whose argparse default is None.
RECIPES = {
    # GluonCV scripts/detection/yolo/train_yolo3.py with the notes' augmentations.
    "paper": dict(optimizer="sgd", lr=1e-3, data_shape=416, batch_size=8, random_shape=True,
                  extra_augment=True, max_expand=4.0, warmup_epochs=2.0, epochs=30,
                  head_scale=1.0),
    # Measured on phantoms from scratch on a 2-core CPU (README, ablation table).
    "cpu": dict(optimizer="adam", lr=1e-3, data_shape=128, batch_size=8, random_shape=False,
                extra_augment=False, max_expand=1.0, warmup_epochs=1.0, epochs=30,
                head_scale=1.0),
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
