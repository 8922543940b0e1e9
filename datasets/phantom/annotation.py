"""Annotations on phantom screenshots in the clinic's two forms (DESIGN.md, "The problem").

1. Red rectangles burnt into the pixels: one red shade and stroke width per screenshot,
   drawn with ``cv2.rectangle`` at the lesion's bounding box rounded outwards to integers;
   the truth box is the rectangle's nominal corners ``(pt1, pt2)``.
2. A labelme 5.x JSON beside a clean image: one shape per lesion, ``shape_type`` one of
   rectangle, polygon (the lesion outline), circle (centre and a point on the circumference),
   and point lists labelme itself does not know, "ellipse" and "sector" (fan). The truth
   box is what a reader computes from the stored points (:func:`shape_box`): the
   axis-aligned bounding box of the points, for a circle centre +- radius.
"""
import math

import cv2
import numpy as np

LABEL = "lesion"
SHAPE_TYPES = ("rectangle", "polygon", "circle", "ellipse", "sector")
SHAPE_P = (0.35, 0.25, 0.1, 0.15, 0.15)
LABELME_VERSION = "5.2.1"


def burn_red_boxes(rng, image, boxes):
    """Draw red rectangles into a copy of ``image``.

    Parameters
    ----------
    rng : numpy.random.Generator
    image : ndarray, H x W x 3 uint8 (BGR)
    boxes : list of [x1, y1, x2, y2] float, source pixels

    Returns
    -------
    (ndarray, list of list of float)
        The inked image and the nominal integer rectangle of each box.
    """
    out = image.copy()
    colour = (int(rng.integers(0, 41)), int(rng.integers(0, 41)), int(rng.integers(200, 256)))
    thickness = int(rng.integers(1, 4))
    truth = []
    for b in boxes:
        p1 = (int(math.floor(b[0])), int(math.floor(b[1])))
        p2 = (int(math.ceil(b[2])), int(math.ceil(b[3])))
        cv2.rectangle(out, p1, p2, colour, thickness)
        truth.append([float(p1[0]), float(p1[1]), float(p2[0]), float(p2[1])])
    return out, truth


def _pts(arr):
    # two decimals, as labelme users see them; the truth box is computed from these values
    return [[round(float(x), 2), round(float(y), 2)] for x, y in arr]


def _ellipse_points(box, n):
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    a, b = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)    # n % 4 == 0: extremes are vertices
    return np.stack([cx + a * np.cos(t), cy + b * np.sin(t)], axis=1)


def _sector_points(rng, box, n):
    """Annular sector (fan) opening downwards whose bounding box is ``box``."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    r2 = max(w / (2 * math.sin(math.radians(50))), 1.5 * h) * rng.uniform(1.0, 1.3)
    phi = math.asin(min(w / (2 * r2), 1.0))
    cy = y2 - r2
    r1 = (r2 - h) / math.cos(phi)
    a = np.linspace(-phi, phi, n | 1)                       # odd: angle 0 gives the bottom
    outer = np.stack([cx + r2 * np.sin(a), cy + r2 * np.cos(a)], axis=1)
    inner = np.stack([cx + r1 * np.sin(a[::-1]), cy + r1 * np.cos(a[::-1])], axis=1)
    return np.concatenate([outer, inner])


def labelme_shape(rng, lesion, label=LABEL, shape_type=None):
    """One labelme shape dict for a :class:`datasets.phantom.scene.Lesion`, labelled ``label``.

    ``shape_type`` (one of ``SHAPE_TYPES``) fixes the shape; default: drawn with ``SHAPE_P``.
    """
    box = lesion.box
    w, h = box[2] - box[0], box[3] - box[1]
    if shape_type is not None and shape_type not in SHAPE_TYPES:
        raise ValueError(f"shape_type must be one of {', '.join(SHAPE_TYPES)}, got {shape_type!r}")
    kind = shape_type or str(rng.choice(SHAPE_TYPES, p=SHAPE_P))
    if kind == "circle" and not 0.75 <= w / h <= 1.33:
        kind = "ellipse"                      # nobody circles an elongated lesion
    if kind == "rectangle":
        points = _pts([box[:2], box[2:]])
    elif kind == "polygon":
        step = int(rng.integers(5, 10))
        points = _pts(lesion.contour[::step])
    elif kind == "circle":
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        r = max(w, h) / 2
        points = _pts([(cx, cy), (cx + r, cy)])
    elif kind == "ellipse":
        points = _pts(_ellipse_points(box, 4 * int(rng.integers(6, 11))))
    else:
        points = _pts(_sector_points(rng, box, int(rng.integers(9, 17))))
    return {"label": label, "points": points, "group_id": None, "shape_type": kind,
            "flags": {}}


def shape_box(shape):
    """Axis-aligned box ``[x1, y1, x2, y2]`` of a labelme shape (circle: centre +- radius)."""
    pts = np.asarray(shape["points"], dtype=np.float64)
    if shape["shape_type"] == "circle":
        (cx, cy), (px, py) = pts[0], pts[1]
        r = math.hypot(px - cx, py - cy)
        return [cx - r, cy - r, cx + r, cy + r]
    return [float(pts[:, 0].min()), float(pts[:, 1].min()),
            float(pts[:, 0].max()), float(pts[:, 1].max())]


def labelme_document(shapes, image_path, width, height):
    """A labelme 5.x document (``imageData`` null: the image sits beside the JSON)."""
    return {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": None, "imageHeight": int(height), "imageWidth": int(width)}
