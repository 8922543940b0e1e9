"""The crop-building options: the argument group train_filter.py declares, the search
keywords taken from them, and ``crops.json``, the record of what a crop folder was built with
(predict.py reads the values back from filter.json)."""
import json
from pathlib import Path

from datasets.filter.crops.fusion import CROP_SIZE, DIFFERENCE_FORM
from infra.atomic import atomic_write_json

SEARCH_KEYS = ("feature", "distance", "context", "search_radius", "stride")


def add_crop_arguments(parser):
    """Declare the crop-building options (similarity search, selection, labelling).

    train_filter.py declares them; predict.py reads the values back from filter.json.
    """
    g = parser.add_argument_group("fused crops")
    g.add_argument("--feature", default="hog",
                   help="feature compared by the similarity search (see "
                        "datasets/filter/similar.py; default: %(default)s)")
    g.add_argument("--distance", default=None,
                   help="distance for the feature (default: the feature's own)")
    g.add_argument("--context", type=float, default=0.5,
                   help="margin around the box, as a fraction of its size, that forms the "
                        "template ring (default: %(default)s)")
    g.add_argument("--search-radius", type=int, default=24,
                   help="search range around the same position in the reference half, pixels "
                        "(default: %(default)s)")
    g.add_argument("--stride", type=int, default=4,
                   help="step of the sliding window, pixels (default: %(default)s)")
    g.add_argument("--min-score", type=float, default=0.05,
                   help="keep detections with at least this score (default: %(default)s)")
    g.add_argument("--top-k", type=int, default=20,
                   help="keep at most this many detections per image, best first; 0 = all "
                        "(default: %(default)s)")
    g.add_argument("--iou", type=float, default=0.5,
                   help="a crop is positive when its IoU with a ground-truth box reaches this "
                        "(default: %(default)s)")
    g.add_argument("--add-gt", action="store_true",
                   help="add the ground-truth boxes of training images as extra positives "
                        "(never to test crops)")
    g.add_argument("--add-random", type=int, default=2, metavar="K",
                   help="add K random boxes per training image, sized like the training "
                        "ground truth and labelled by the --iou rule, as extra crops: mostly "
                        "negatives (background and look-alikes the detector did not propose), "
                        "which a good detector leaves few of; never to test crops. On the "
                        "phantom, K=2 raised the validation AUC from 0.85/0.90 to 0.94/0.95 "
                        "(two detector runs; K=4 0.95/0.94); 0 = off (default: %(default)s)")
    g.add_argument("--add-jitter", type=int, default=0, metavar="K",
                   help="add K boxes per ground-truth box of the training images, each moved "
                        "by up to half its size and rescaled, labelled by the --iou rule: "
                        "mostly poorly placed boxes on a lesion (IoU 0.1-0.5), the false "
                        "positives a filter trained on detections and random boxes lets "
                        "through; never to test crops. Off by default: on the crops of 8 "
                        "demo runs at equal iterations K=1 lowered the mean validation AUC "
                        "(0.928 -> 0.888) and precision gain (+0.127 -> +0.112), and helped "
                        "only filters trained 8 epochs or more (docs/EXPERIMENTS.md); 0 = off "
                        "(default: %(default)s)")
    g.add_argument("--crop-size", type=int, default=CROP_SIZE,
                   help="side of the fused crop, pixels (default: %(default)s)")
    g.add_argument("--crop-workers", type=int, default=1,
                   help="processes that build crops in parallel (default: %(default)s)")
    return g


def search_kwargs_from(options):
    """The keyword arguments of ``find_similar`` from a Namespace or dict of options."""
    get = options.get if isinstance(options, dict) else (lambda k: getattr(options, k))
    return {k: get(k) for k in SEARCH_KEYS}


def write_crop_options(out_dir, options):
    """Record the options a crop folder was built with (``crops.json``)."""
    atomic_write_json(Path(out_dir) / "crops.json", dict(options, difference=DIFFERENCE_FORM))


#: Training-only extra boxes added to the crop options after the first crop folders: a
#: folder whose crops.json predates one was built without those boxes.
EXTRAS_ADDED_LATER = {"add_random": 0, "add_jitter": 0}


def read_crop_options(out_dir):
    """The options of ``out_dir/crops.json`` (None without one), with the extras it predates
    at 0, so a reused older folder is compared with the options it was really built with."""
    p = Path(out_dir) / "crops.json"
    if not p.exists():
        return None
    with open(p, encoding="utf-8") as f:
        return dict(EXTRAS_ADDED_LATER, **json.load(f))
