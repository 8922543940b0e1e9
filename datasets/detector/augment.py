"""Extra detection augmentations the GluonCV YOLOv3 transform lacks (notes 002 "数据增强").

GluonCV's ``YOLO3DefaultTrainTransform`` already does colour jitter, random expand (pad),
crop, resize and horizontal flip. The notes also list small rotations, pixel noise and
brightness/contrast/sharpness changes; this module adds those, on the raw sample before
GluonCV's transform:

- rotation by up to ``rotate_deg`` about the image centre, same size, black corners (the
  screenshots' background is black; reflected borders would invent anatomy). A box becomes
  the bounding box of its rotated corners, clipped to the image; a box with less than
  ``min_visible`` of that area inside is dropped. If every box would drop, the rotation is
  skipped (GluonCV's record pipeline cannot hold box-free samples, MXNET_TRAPS 7).
- speckle (multiplicative, ``img * (1 + n)``) and Gaussian (additive) noise; one noise value
  per pixel shared by the channels, so grey ultrasound stays grey.
- brightness (add ``U(-b, b) * 255``), contrast (scale about the mean grey level by
  ``U(1-c, 1+c)``), sharpness (``blur + f * (img - blur)`` with ``f ~ U(1-s, 1+s)``:
  ``f < 1`` blurs, ``f > 1`` is an unsharp mask; the semantics of PIL's ImageEnhance).

Box convention: ``[x1, y1, x2, y2]`` in pixels, GluonCV's continuous coordinates (pixel
``i`` covers ``[i, i+1)``, so its centre is ``i + 0.5``), while OpenCV's ``warpAffine``
maps pixel indices; ``rotation_matrix`` builds the index-space matrix and
``rotate_boxes`` applies it with the half-pixel shift.

All randomness comes from the global ``np.random`` (the trainer re-seeds it per worker,
MXNET_TRAPS 13).
"""
import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)


def rotation_matrix(width, height, angle_deg):
    """2x3 affine matrix rotating pixel indices by ``angle_deg`` about the image centre.

    Positive angles turn counter-clockwise on screen (OpenCV's convention).
    """
    return cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), float(angle_deg), 1.0)


def rotate_boxes(boxes, matrix, width, height, min_visible=0.5):
    """Bounding boxes of rotated box corners, clipped to the image.

    Parameters
    ----------
    boxes : np.ndarray
        ``(N, >=4)`` float, ``x1, y1, x2, y2`` in pixels (continuous coordinates).
    matrix : np.ndarray
        ``(2, 3)`` affine matrix in pixel-index coordinates (as given to ``cv2.warpAffine``).
    width, height : int
        Size of the output image.
    min_visible : float
        Keep a box when at least this fraction of its rotated bounding box lies inside.

    Returns
    -------
    out : np.ndarray
        ``(N, >=4)`` copy of ``boxes`` with the new coordinates (extra columns kept).
    keep : np.ndarray
        ``(N,)`` bool, boxes to keep.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    out = boxes.copy()
    if len(boxes) == 0:
        return out, np.zeros(0, dtype=bool)
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    # corners (N, 4, 2) in index coordinates: continuous minus the half pixel
    corners = np.stack([np.stack([x1, y1], -1), np.stack([x2, y1], -1),
                        np.stack([x1, y2], -1), np.stack([x2, y2], -1)], axis=1) - 0.5
    rotated = corners @ matrix[:, :2].T + matrix[:, 2] + 0.5
    lo, hi = rotated.min(axis=1), rotated.max(axis=1)
    area = np.prod(hi - lo, axis=1)
    lo_c = np.clip(lo, 0, [width, height])
    hi_c = np.clip(hi, 0, [width, height])
    size_c = hi_c - lo_c
    visible = np.where(area > 0, np.prod(size_c, axis=1) / np.maximum(area, 1e-12), 0.0)
    keep = (visible >= min_visible) & (size_c[:, 0] >= 1) & (size_c[:, 1] >= 1)
    out[:, 0:2] = lo_c
    out[:, 2:4] = hi_c
    return out, keep


def rotate(img, boxes, angle_deg, min_visible=0.5):
    """Rotate an image and its boxes about the image centre (same size, black corners).

    Parameters
    ----------
    img : np.ndarray
        ``(H, W, C)`` or ``(H, W)`` image.
    boxes : np.ndarray
        ``(N, >=4)`` boxes in pixels; extra columns are carried along.
    angle_deg : float
        Counter-clockwise angle in degrees.
    min_visible : float
        See ``rotate_boxes``.

    Returns
    -------
    img : np.ndarray
        Rotated image, same shape and dtype.
    boxes : np.ndarray
        Kept boxes, ``(M, >=4)``, M <= N, same dtype as the input boxes.
    """
    h, w = img.shape[:2]
    boxes = np.asarray(boxes)
    if angle_deg == 0:
        return img.copy(), boxes.copy()
    m = rotation_matrix(w, h, angle_deg)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if out.ndim < img.ndim:  # warpAffine drops a trailing channel axis of size 1
        out = out.reshape(img.shape)
    new, keep = rotate_boxes(boxes, m, w, h, min_visible)
    return out, new[keep].astype(boxes.dtype, copy=False)


def _to_uint8(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def adjust_brightness_contrast(img, delta, factor):
    """``mean + (img + delta - mean) * factor``; delta in grey levels, mean of the image."""
    x = img.astype(np.float32) + np.float32(delta)
    mean = x.mean()
    return _to_uint8(mean + (x - mean) * np.float32(factor))


def adjust_sharpness(img, factor, sigma=1.0):
    """``blur + factor * (img - blur)`` with a Gaussian blur: < 1 blurs, > 1 sharpens."""
    x = img.astype(np.float32)
    blur = cv2.GaussianBlur(x, (0, 0), sigma)
    if blur.ndim < x.ndim:
        blur = blur.reshape(x.shape)
    return _to_uint8(blur + np.float32(factor) * (x - blur))


def add_noise(img, speckle_std=0.0, noise_std=0.0):
    """Speckle ``img * (1 + N(0, speckle_std))`` then ``+ N(0, noise_std * 255)``.

    One draw per pixel, shared by the channels; draws from ``np.random``.
    """
    x = img.astype(np.float32)
    shape = img.shape[:2] + (1,) * (img.ndim - 2)
    if speckle_std > 0:
        x = x * (1 + np.random.normal(0.0, speckle_std, shape).astype(np.float32))
    if noise_std > 0:
        x = x + np.random.normal(0.0, noise_std * 255.0, shape).astype(np.float32)
    return _to_uint8(x)


class ExtraAugment:
    """Random rotation, noise, brightness/contrast and sharpness for detection samples.

    Each enabled augmentation (strength > 0) is applied independently with probability
    ``p``, in the order rotation, brightness/contrast, sharpness, noise.

    Parameters
    ----------
    rotate_deg : float
        Maximum rotation angle in degrees (uniform in ``[-rotate_deg, rotate_deg]``).
    noise_std : float
        Additive Gaussian noise std as a fraction of 255.
    speckle_std : float
        Multiplicative noise std (``img * (1 + n)``).
    brightness : float
        Maximum brightness shift as a fraction of 255.
    contrast : float
        Contrast factor drawn from ``[1 - contrast, 1 + contrast]``.
    sharpness : float
        Sharpness factor drawn from ``[1 - sharpness, 1 + sharpness]`` (floored at 0).
    p : float
        Probability of applying each enabled augmentation.
    min_visible : float
        Fraction of a rotated box that must stay inside the image to keep it.

    Call ``aug(img, label) -> (img, label)``: ``img`` ``(H, W, 3)`` uint8 numpy array (or
    an mxnet NDArray, returned as one), ``label`` ``(N, >=4)`` float boxes in pixels with
    any extra columns (class, difficult) carried along.
    """

    def __init__(self, rotate_deg=5.0, noise_std=0.02, speckle_std=0.1, brightness=0.1,
                 contrast=0.2, sharpness=0.5, p=0.5, min_visible=0.5):
        values = dict(rotate_deg=rotate_deg, noise_std=noise_std, speckle_std=speckle_std,
                      brightness=brightness, contrast=contrast, sharpness=sharpness)
        for name, v in values.items():
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"ExtraAugment {name} must be a finite number >= 0, got {v!r}")
        if not 0 <= p <= 1:
            raise ValueError(f"ExtraAugment p must be in [0, 1], got {p!r}")
        if not 0 <= min_visible <= 1:
            raise ValueError(f"ExtraAugment min_visible must be in [0, 1], got {min_visible!r}")
        self.rotate_deg = float(rotate_deg)
        self.noise_std = float(noise_std)
        self.speckle_std = float(speckle_std)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.sharpness = float(sharpness)
        self.p = float(p)
        self.min_visible = float(min_visible)

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"ExtraAugment({fields})"

    def __call__(self, img, label):
        as_nd = hasattr(img, "asnumpy")
        x = img.asnumpy() if as_nd else np.asarray(img)
        if x.dtype != np.uint8:
            raise TypeError(f"ExtraAugment wants a uint8 image, got {x.dtype}")
        label = np.asarray(label)
        if label.ndim != 2 or label.shape[1] < 4:
            raise ValueError(f"ExtraAugment wants an (N, >=4) box array, got shape {label.shape}")
        # Four apply-flags drawn every call, so the stream does not depend on which apply.
        flags = np.random.uniform(size=4) < self.p

        if flags[0] and self.rotate_deg > 0:
            angle = np.random.uniform(-self.rotate_deg, self.rotate_deg)
            rx, rlabel = rotate(x, label, angle, self.min_visible)
            if len(rlabel) or not len(label):
                x, label = rx, rlabel
            else:
                log.debug("rotation by %.2f deg would drop every box; skipped", angle)
        if flags[1] and (self.brightness > 0 or self.contrast > 0):
            delta = np.random.uniform(-self.brightness, self.brightness) * 255.0
            factor = np.random.uniform(1 - self.contrast, 1 + self.contrast)
            x = adjust_brightness_contrast(x, delta, max(factor, 0.0))
        if flags[2] and self.sharpness > 0:
            factor = np.random.uniform(1 - self.sharpness, 1 + self.sharpness)
            x = adjust_sharpness(x, max(factor, 0.0))
        if flags[3] and (self.speckle_std > 0 or self.noise_std > 0):
            x = add_noise(x, self.speckle_std, self.noise_std)

        if as_nd:
            import mxnet as mx  # only when the caller already works in mxnet
            x = mx.nd.array(x, dtype=np.uint8)
        return x, label
