"""Random detection sets for the eval tests (VOC and COCO scoring against their references)."""
import numpy as np


def random_set(seed, n_img=40, n_cls=3, integer=False, score_decimals=1, jitter=3.0,
               big=40, inverted=0.0, int_ids=False):
    """Ground truth and detections with difficult boxes, ties, empty images and, in every
    ninth image, ``big`` detections of class 0 (numpy's argsort stops being stable past 16;
    COCO keeps only 100 per image and class).

    ``inverted``: fraction of detections turned inside out -- a third on x only, a third on
    both axes, a third by less than one pixel on x (which offset 1 turns back into a tiny
    valid box). Extra random draws happen only when it is non-zero, so the sets of the
    other options do not change. ``int_ids``: integer image ids in shuffled order (COCO sorts
    them) instead of ``im000``, ``im001``, ...
    """
    rng = np.random.RandomState(seed)
    gt, det = {}, {}
    keys = [f"im{i:03d}" for i in range(n_img)]
    if int_ids:
        keys = list(np.random.RandomState(seed + 1000).permutation(n_img) * 7 + 3)
        keys = [int(k) for k in keys]
    for i in range(n_img):
        key = keys[i]
        ng = 0 if rng.rand() < 0.15 else rng.randint(1, 7)
        xy = rng.uniform(0, 200, (ng, 2))
        gb = np.c_[xy, xy + rng.uniform(4, 60, (ng, 2))]
        if integer:
            gb = np.round(gb)
        gl = rng.randint(0, n_cls, ng)
        gt[key] = {"boxes": gb, "labels": gl, "difficult": rng.rand(ng) < 0.2}
        if rng.rand() < 0.15:
            continue  # image without a detection entry at all
        nd = rng.randint(0, 12) if i % 9 else big
        src = rng.randint(0, max(ng, 1), nd)
        db = (gb[src] if ng else rng.uniform(0, 200, (nd, 4))) + rng.normal(0, jitter, (nd, 4))
        far = rng.rand(nd) < 0.3
        xy = rng.uniform(0, 200, (nd, 2))
        db[far] = np.c_[xy, xy + rng.uniform(4, 60, (nd, 2))][far]
        db = np.c_[np.minimum(db[:, :2], db[:, 2:]), np.maximum(db[:, :2], db[:, 2:])]
        if integer:
            db = np.round(db)
        dl = gl[src] if ng else rng.randint(0, n_cls, nd)
        if i % 9 == 0:
            dl = np.zeros(nd, int)  # one big group
        dl = np.where(rng.rand(nd) < 0.1, rng.randint(0, n_cls, nd), dl)
        if inverted:
            db = invert_some(db, rng, inverted)
        det[key] = {"boxes": db, "labels": dl,
                    "scores": np.round(rng.rand(nd), score_decimals)}
    return gt, det


def invert_some(boxes, rng, fraction):
    """A copy of ``boxes`` with about ``fraction`` of the rows inverted (see random_set)."""
    b = np.array(boxes, dtype=np.float64)
    kind = np.where(rng.rand(len(b)) < fraction, rng.randint(0, 3, len(b)), -1)
    b[kind == 0] = b[kind == 0][:, [2, 1, 0, 3]]
    b[kind == 1] = b[kind == 1][:, [2, 3, 0, 1]]
    sub = kind == 2
    b[sub, 2] = b[sub, 0] - rng.uniform(0.05, 0.95, int(sub.sum()))
    return b
