"""Training data for the filter: grouped validation split, per-epoch balancing, augmentation.

Everything random here is a pure function of ``(seed, epoch, position)``: the sampler hands
the dataset keys ``(index, epoch, position)`` and the dataset draws its augmentation from
``numpy.random.default_rng([seed, epoch, position])``. So the batches do not depend on the
number of DataLoader workers (forked workers share one ``np.random`` state otherwise,
MXNET_TRAPS 13) and a resumed run sees exactly the batches an uninterrupted one would.

Augmentation of a fused crop (c1 = lesion box, c2 = matched reference, c3 = difference):

- geometric (horizontal flip, optional vertical flip, small rotation) moves c1 and c2 the
  same way, so c3 moves with them by construction. Vertical flips are off by default: depth
  runs downwards in B-mode (attenuation, fascia layers), a flipped crop is not anatomy.
- photometric (brightness, contrast) is one affine map applied to c1 and c2 together, then
  c3 is **recomputed** from them. A scanner gain/offset change affects both panels alike,
  so it cancels in the difference (c3 keeps 128 = "no difference"); applying the same
  affine to c3 directly would shift that zero level and invent a difference. ``side_gain``
  optionally scales c2 alone by a small random factor, imitating the gain change between
  the two panels of one screenshot.
"""
import logging

import cv2
import numpy as np
from mxnet import gluon

from datasets.detector.augment import adjust_brightness_contrast
from datasets.filter.crops.fusion import difference_channel
from models.filter_net import to_input

log = logging.getLogger(__name__)

BALANCE_MODES = ("none", "under", "over", "both")


def split_count(val_frac):
    """The folds :func:`group_split` cuts for ``val_frac`` (validation is one of them), hence
    the fewest groups it needs."""
    if not 0 < val_frac < 1:
        raise ValueError(f"--val-frac must be in (0, 1), got {val_frac}")
    return max(2, int(round(1.0 / val_frac)))


def group_split(labels, groups, val_frac=0.2, seed=0):
    """Split crops into train/validation by group (source screenshot), stratified by label.

    Parameters
    ----------
    labels : array-like of int, shape (N,), values ±1
    groups : array-like of str, shape (N,)
        Group of each crop's image (manifest ``group``): all crops of one screenshot land on
        the same side.
    val_frac : float in (0, 1)
        Approximate validation fraction (one fold of ``round(1 / val_frac)``).
    seed : int

    Returns
    -------
    train_idx, val_idx : ndarray of int
    """
    from sklearn.model_selection import StratifiedGroupKFold
    labels, groups = np.asarray(labels), np.asarray(groups)
    n_groups = len(set(groups.tolist()))
    k = split_count(val_frac)
    if n_groups < k:
        raise ValueError(f"validation split needs at least {k} source screenshots (groups) "
                         f"for --val-frac {val_frac}, found {n_groups}")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(labels)), labels, groups))
    for name, idx in (("train", train_idx), ("validation", val_idx)):
        if len(set(labels[idx].tolist())) < 2:
            log.warning("the %s part holds only label %s: AUC and the threshold are "
                        "undefined there; use more data or a larger --val-frac", name,
                        sorted(set(labels[idx].tolist())))
    return np.sort(train_idx), np.sort(val_idx)


def epoch_indices(labels, epoch, seed=0, balance="none", neg_ratio=1.0):
    """The crops (indices, shuffled) one epoch trains on.

    Parameters
    ----------
    labels : array-like of int, values ±1
    epoch : int
    seed : int
    balance : {"none", "under", "over", "both"}
        ``none`` keeps the data as it is (the notes' conclusion: train on the distribution
        you test on). ``under`` keeps every positive and ``neg_ratio`` negatives per positive
        (a fresh draw each epoch); ``over`` keeps every negative and repeats positives up to
        ``1 / neg_ratio`` per negative; ``both`` meets in the middle (positives repeated,
        negatives thinned, same total order of magnitude) — the notes' "负例降采样 + 正例过采样".
    neg_ratio : float > 0
        Negatives per positive after balancing.

    Returns
    -------
    ndarray of int
    """
    if balance not in BALANCE_MODES:
        raise ValueError(f"--balance must be one of {BALANCE_MODES}, got {balance!r}")
    if not neg_ratio > 0:
        raise ValueError(f"--neg-ratio must be > 0, got {neg_ratio}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, epoch, 1])
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)
    if balance != "none" and (len(pos) == 0 or len(neg) == 0):
        raise ValueError(f"--balance {balance} needs both classes; have {len(pos)} positive "
                         f"and {len(neg)} negative crops")
    if balance == "under":
        neg = _resample(neg, int(round(neg_ratio * len(pos))), rng)
    elif balance == "over":
        pos = _resample(pos, int(round(len(neg) / neg_ratio)), rng)
    elif balance == "both":
        n_pos = int(round(np.sqrt(len(pos) * len(neg) / neg_ratio)))
        pos = _resample(pos, max(n_pos, len(pos)), rng)
        neg = _resample(neg, min(int(round(neg_ratio * n_pos)), len(neg)), rng)
    return rng.permutation(np.concatenate([pos, neg]))


def _resample(idx, n, rng):
    """``n`` items of ``idx``: a subset without replacement when n <= len, else every item
    repeated whole times plus a random remainder."""
    n = max(int(n), 1)
    if n <= len(idx):
        return rng.choice(idx, n, replace=False)
    reps, rest = divmod(n, len(idx))
    return np.concatenate([np.tile(idx, reps), rng.choice(idx, rest, replace=False)])


class CropAugment:
    """Random augmentation of one fused crop (see the module docstring for the channel rules).

    Parameters
    ----------
    hflip, vflip : bool
        Random horizontal / vertical flips (probability 0.5 each).
    rotate_deg : float
        Rotation angle drawn from U(−r, r); reflected borders (the crop is interior tissue).
    brightness : float
        Offset drawn from U(−b, b) × 255, shared by c1 and c2.
    contrast : float
        Factor drawn from U(1−c, 1+c) about the mean of c1 and c2, shared by both.
    side_gain : float
        Extra factor U(1−g, 1+g) on c2 only.
    """

    def __init__(self, hflip=True, vflip=False, rotate_deg=10.0, brightness=0.1, contrast=0.1,
                 side_gain=0.0):
        self.hflip, self.vflip = bool(hflip), bool(vflip)
        self.rotate_deg, self.side_gain = float(rotate_deg), float(side_gain)
        self.brightness, self.contrast = float(brightness), float(contrast)

    def __call__(self, crop, rng):
        """Augment ``crop`` (H, W, 3) uint8 with generator ``rng``; returns a new uint8 crop."""
        sides = np.ascontiguousarray(crop[:, :, :2])
        if self.hflip and rng.random() < 0.5:
            sides = sides[:, ::-1]
        if self.vflip and rng.random() < 0.5:
            sides = sides[::-1]
        if self.rotate_deg:
            angle = rng.uniform(-self.rotate_deg, self.rotate_deg)
            h, w = sides.shape[:2]
            m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
            sides = cv2.warpAffine(np.ascontiguousarray(sides), m, (w, h),
                                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        if self.brightness or self.contrast:
            delta = rng.uniform(-self.brightness, self.brightness) * 255.0
            factor = rng.uniform(1.0 - self.contrast, 1.0 + self.contrast)
            sides = adjust_brightness_contrast(sides, delta, factor)
        if self.side_gain:
            gain = rng.uniform(1.0 - self.side_gain, 1.0 + self.side_gain)
            sides = sides.copy()
            sides[:, :, 1] = np.clip(np.rint(sides[:, :, 1] * gain), 0, 255).astype(np.uint8)
        c1, c2 = sides[:, :, 0], sides[:, :, 1]
        return np.dstack([c1, c2, difference_channel(c1, c2)])

    def __repr__(self):
        return (f"CropAugment(hflip={self.hflip}, vflip={self.vflip}, "
                f"rotate_deg={self.rotate_deg}, brightness={self.brightness}, "
                f"contrast={self.contrast}, side_gain={self.side_gain})")


class CropDataset(gluon.data.Dataset):
    """Fused crops held in memory, returned as ``(float32 (3, S, S) input, float32 ±1 label)``.

    Parameters
    ----------
    crops : ndarray of uint8, shape (N, S, S, 3)
    labels : array-like of int, ±1
    augment : CropAugment or None
    seed : int

    Items are indexed by an int (no augmentation) or by a key ``(index, epoch, position)``
    from :class:`EpochSampler`, whose augmentation is drawn from
    ``default_rng([seed, epoch, position])``.
    """

    def __init__(self, crops, labels, augment=None, seed=0):
        self.crops = np.asarray(crops)
        self.labels = np.asarray(labels, dtype=np.float32)
        if len(self.crops) != len(self.labels):
            raise ValueError(f"{len(self.crops)} crops but {len(self.labels)} labels")
        self.augment, self.seed = augment, int(seed)

    def __len__(self):
        return len(self.crops)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            idx, epoch, position = key
            crop = self.crops[idx]
            if self.augment is not None:
                crop = self.augment(crop, np.random.default_rng([self.seed, epoch, position]))
        else:
            idx = int(key)
            crop = self.crops[idx]
        # HingeLoss wants float32 ±1 labels (int32 raises, 0/1 never learns: MXNET_TRAPS 38-39).
        return to_input(crop), np.float32(self.labels[idx])


class EpochSampler(gluon.data.Sampler):
    """Yields ``(index, epoch, position)`` keys of :func:`epoch_indices` for the current epoch.

    Call :meth:`set_epoch` before iterating; the sampler lives in the main process, so the
    change reaches forked workers (the keys travel with each batch).
    """

    def __init__(self, labels, seed=0, balance="none", neg_ratio=1.0):
        self.labels, self.seed = np.asarray(labels), int(seed)
        self.balance, self.neg_ratio = balance, float(neg_ratio)
        self.epoch = 0
        self._order = epoch_indices(self.labels, 0, self.seed, balance, neg_ratio)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)
        self._order = epoch_indices(self.labels, self.epoch, self.seed, self.balance,
                                    self.neg_ratio)

    def __iter__(self):
        for pos, idx in enumerate(self._order):
            yield (int(idx), self.epoch, pos)

    def __len__(self):
        return len(self._order)
