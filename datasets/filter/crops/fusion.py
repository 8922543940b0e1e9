"""Fusing one crop: detected box | matched reference region | signed difference.

The two regions are cut (edge-replicated where a box leaves the image), resized to
``size`` x ``size`` and stacked with :func:`difference_channel`, whose form the package
docstring explains; :func:`crops_for_detections` runs the similar-region search for every
box first (train_filter.py's crop folders and predict.py).
"""
import math

import cv2
import numpy as np

from datasets.filter.similar import Match, NoRingError, find_similar, pixel_box

CROP_SIZE = 128
DIFFERENCE_FORM = "signed_half_shift"  # c3 = (c1 - c2) // 2 + 128


def difference_channel(c1, c2):
    """Channel 3 of a fused crop: ``(c1 - c2) // 2 + 128`` as uint8 (see module docstring).

    Parameters
    ----------
    c1, c2 : ndarray of uint8, same shape
        Lesion-half and reference-half content.

    Returns
    -------
    ndarray of uint8, same shape; 128 where the two agree.
    """
    d = (c1.astype(np.int16) - c2.astype(np.int16)) // 2 + 128
    return d.astype(np.uint8)


def _cut(gray, box):
    """Pixels of ``box`` (float xyxy) in ``gray``; parts outside the image are edge-replicated,
    so a box touching the border still yields its full size."""
    h, w = gray.shape[:2]
    x1, y1 = int(math.floor(box[0])), int(math.floor(box[1]))
    x2, y2 = int(math.ceil(box[2])), int(math.ceil(box[3]))
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if cx1 >= cx2 or cy1 >= cy2:
        raise ValueError(f"box {list(box)} lies outside the {w}x{h} image")
    patch = gray[cy1:cy2, cx1:cx2]
    pads = (cy1 - y1, y2 - cy2, cx1 - x1, x2 - cx2)
    if any(pads):
        patch = cv2.copyMakeBorder(patch, *pads, cv2.BORDER_REPLICATE)
    return patch


def _resize(patch, size):
    h, w = patch.shape[:2]
    # INTER_AREA averages when shrinking (no aliasing of the speckle); linear when enlarging.
    interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def _match_box(match, box):
    if match is None:
        return tuple(box)
    if hasattr(match, "box"):
        return tuple(match.box)
    return tuple(match)


def fuse_crop(lesion_gray, reference_gray, box, match, size=CROP_SIZE):
    """Build one fused crop.

    Parameters
    ----------
    lesion_gray, reference_gray : ndarray of uint8, shape (H, W) and (H', W')
        Detection half and its reference half, grey.
    box : sequence of 4 floats
        Detected box ``[x1, y1, x2, y2]`` in lesion-half pixels.
    match : Match, sequence of 4 floats or None
        Result of ``find_similar`` (its ``box`` is in reference pixels; when it carries a
        ``query_box``, channel 1 is cut there instead of ``box``), a reference box, or None
        for "the same position".
    size : int
        Side of the output.

    Returns
    -------
    ndarray of uint8, shape (size, size, 3)
        Channel 0 = box content, 1 = matched reference content, 2 = ``difference_channel``.
    """
    if lesion_gray.ndim != 2 or reference_gray.ndim != 2:
        raise ValueError(f"fuse_crop wants 2-D grey images, got shapes {lesion_gray.shape} "
                         f"and {reference_gray.shape}")
    # find_similar reports the pixel box it actually searched for (rounded, clipped); cut
    # channel 1 there so both sides cover the same pixels and the offset is exact.
    query = getattr(match, "query_box", None) or box
    c1 = _resize(_cut(lesion_gray, query), size)
    c2 = _resize(_cut(reference_gray, _match_box(match, box)), size)
    return np.dstack([c1, c2, difference_channel(c1, c2)])


def clip_boxes(boxes, shape):
    """Boxes (N, 4) clipped to an image of ``shape`` (H, W); a new float64 array."""
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, shape[1])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, shape[0])
    return boxes


def crops_for_detections(lesion_gray, reference_gray, boxes, search_kwargs, size=CROP_SIZE):
    """Search the reference half for every box and fuse the crops (used by predict.py).

    Parameters
    ----------
    lesion_gray, reference_gray : ndarray of uint8, 2-D
    boxes : array-like, shape (N, 4)
        Boxes in lesion-half pixels; clipped to the lesion half before the search (a box
        wholly outside raises ValueError: drop those first).
    search_kwargs : dict
        Keyword arguments of ``datasets.filter.similar.find_similar`` (feature, distance, context,
        search_radius, stride).
    size : int

    Returns
    -------
    crops : ndarray of uint8, shape (N, size, size, 3)
    matches : list of Match, one per box
    """
    boxes = clip_boxes(boxes, lesion_gray.shape)
    crops = np.zeros((len(boxes), size, size, 3), np.uint8)
    matches = []
    for i, box in enumerate(boxes):
        try:
            match = find_similar(lesion_gray, reference_gray, tuple(box), **search_kwargs)
        except NoRingError:
            # A box filling the half (an untrained detector's favourite) has no surroundings
            # to search with: compare it with the same place, as the panels are aligned.
            shape = tuple(min(a, b) for a, b in zip(lesion_gray.shape, reference_gray.shape))
            pb = tuple(int(v) for v in pixel_box(box, shape))
            match = Match(box=pb, dx=0, dy=0, distance=float("nan"), query_box=pb)
        crops[i] = fuse_crop(lesion_gray, reference_gray, box, match, size)
        matches.append(match)
    return crops, matches
