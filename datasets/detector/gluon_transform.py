"""GluonCV's own YOLOv3 train transform with this repo's two patches (the reference path).

``datasets.detector.data.train_transforms(..., numpy_transform=False)`` builds
``YOLO3DefaultTrainTransform`` wrapped in :class:`LimitedExpand` (zoom-out capped) and
:class:`FastCrop` (exact, faster constrained crop); the default numpy transform
(``datasets.detector.numpy_transform``) reproduces that pipeline and is tested against it.
"""


class FastCrop:
    """A GluonCV YOLOv3 train transform whose random crop runs ``datasets.detector.fast_crop``
    (same crops and random-number use, a fraction of the time), swapped in for the duration
    of the call like :class:`LimitedExpand` (module level, so loader workers can unpickle it)."""

    def __init__(self, transform):
        self._t = transform

    def __call__(self, img, label):
        from gluoncv.data.transforms.experimental import bbox as experimental_bbox
        from datasets.detector.fast_crop import random_crop_with_constraints
        original = experimental_bbox.random_crop_with_constraints
        experimental_bbox.random_crop_with_constraints = random_crop_with_constraints
        try:
            return self._t(img, label)
        finally:
            experimental_bbox.random_crop_with_constraints = original


class LimitedExpand:
    """GluonCV's YOLOv3 train transform with its random expand capped at ``max_expand``.

    The stock transform zooms out up to 4x half the time before resizing to the input size,
    which shrinks 25-90 px lesions in a ~450 px half to a few pixels at 128-256 px inputs
    (MXNET_TRAPS 22); on phantoms a small YOLOv3 learned nothing in 16 epochs that way
    (datasets/phantom/ notes). GluonCV has no knob for it, so the module function its
    ``__call__`` uses is swapped for the duration of the call (module level and picklable,
    so loader workers can use it).
    """

    def __init__(self, transform, max_expand):
        if max_expand < 1:
            raise ValueError(f"max_expand must be >= 1 (1 = no expand), got {max_expand}")
        self._t = transform
        self.max_expand = float(max_expand)

    def __call__(self, img, label):
        import gluoncv.data.transforms.presets.yolo as preset
        original = preset.timage.random_expand
        ratio = self.max_expand

        def capped(src, max_ratio=4, fill=0, keep_ratio=True):
            if ratio <= 1:
                return src, (0, 0, src.shape[1], src.shape[0])
            return original(src, max_ratio=ratio, fill=fill, keep_ratio=keep_ratio)

        preset.timage.random_expand = capped
        try:
            return self._t(img, label)
        finally:
            preset.timage.random_expand = original
