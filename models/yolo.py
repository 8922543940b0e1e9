"""YOLOv3 detector factory over the GluonCV model zoo.

``build`` returns an initialised ``yolo3_*_custom`` network for our classes: ImageNet backbone
weights through GluonCV when ``pretrained_base`` is asked for (and reachable), a local
``.params`` file with ``init_params``, and optionally the focal objectness loss of
``models.yolo_loss``. ``model.json`` (docs/CONTRACTS.md) records what predict.py needs to
rebuild the trained net.
"""
import json
import logging
import os
import warnings
from pathlib import Path

import mxnet as mx

from models.yolo_train import FUSION_IOU

log = logging.getLogger(__name__)

#: Networks the factory builds; darknet53 is the notes' detector, the MobileNets are for CPU.
NETWORKS = ("yolo3_darknet53_custom", "yolo3_mobilenet1.0_custom", "yolo3_mobilenet0.25_custom")
DEFAULT_NETWORK = NETWORKS[0]

# ImageNet backbone file each network fetches through gluoncv.model_zoo.model_store.
_BACKBONE = {"yolo3_darknet53_custom": "darknet53",
             "yolo3_mobilenet1.0_custom": "mobilenet1.0",
             "yolo3_mobilenet0.25_custom": "mobilenet0.25"}


class WeightsUnavailableError(RuntimeError):
    """Pretrained backbone weights are neither cached locally nor downloadable."""


def add_model_arguments(parser):
    """Declare the detector options (network, pretrained backbone, init file, focal loss)."""
    g = parser.add_argument_group("detector")
    g.add_argument("--network", default=DEFAULT_NETWORK, choices=NETWORKS,
                   help="GluonCV YOLOv3 network (default: %(default)s; the MobileNets are for "
                        "CPU smoke runs)")
    g.add_argument("--pretrained-base", action="store_true",
                   help="start the backbone from GluonCV's ImageNet weights (downloaded into "
                        "$MXNET_HOME/models unless already there)")
    g.add_argument("--init-params", default=None, metavar="PATH",
                   help="initialise the whole detector from this .params file (same network "
                        "and classes), e.g. a previous run's best.params")
    g.add_argument("--focal-alpha", type=float, default=None,
                   help="focal loss on objectness: weight of positives (0.5 = none); "
                        "off unless --focal-alpha or --focal-gamma is given")
    g.add_argument("--focal-gamma", type=float, default=None,
                   help="focal loss on objectness: focusing exponent (0 = plain BCE)")
    return g


def _model_home():
    return Path(os.environ.get("MXNET_HOME", os.path.join("~", ".mxnet"))).expanduser() / "models"


#: The zoo's ``yolo3_*_custom`` recipes: backbone, its three feature stages, head widths.
_ZOO_PARTS = {
    "yolo3_darknet53_custom": ("darknet53", (15, 24, None), (512, 256, 128)),
    "yolo3_mobilenet1.0_custom": ("mobilenet1.0", (33, 69, -2), (512, 256, 128)),
    "yolo3_mobilenet0.25_custom": ("mobilenet0.25", (33, 69, -2), (256, 128, 128)),
}


def zoo_network(network, classes, pretrained_base=False, head_scale=1.0):
    """The uninitialised GluonCV network: ``model_zoo.get_model(network)`` itself, or with
    ``head_scale != 1`` the same backbone, stages, anchors and strides with detection heads
    ``head_scale`` times as wide.

    At a 128 px input the heads of yolo3_mobilenet0.25 cost about ten times its backbone: a
    CPU run from scratch buys more iterations per second with narrower heads (forward 2.9x
    faster at half width, 5x at a quarter), and on phantoms they also learned faster per
    iteration (README, ablation).
    """
    from gluoncv import model_zoo
    if head_scale == 1:
        return model_zoo.get_model(network, classes=list(classes),
                                   pretrained_base=pretrained_base)
    from gluoncv.model_zoo.yolo.darknet import darknet53
    from gluoncv.model_zoo.mobilenet import get_mobilenet
    from gluoncv.model_zoo.yolo.yolo3 import get_yolov3
    backbone, cuts, filters = _ZOO_PARTS[network]
    if backbone == "darknet53":
        base = darknet53(pretrained=pretrained_base)
    else:
        base = get_mobilenet(multiplier=float(backbone[len("mobilenet"):]),
                             pretrained=pretrained_base)
    f = base.features
    stages = [f[:cuts[0]], f[cuts[0]:cuts[1]], f[cuts[1]:cuts[2]]]
    widths = [max(8, int(round(w * head_scale))) for w in filters]
    return get_yolov3(backbone, stages, widths, COCO_ANCHOR_LAYERS, [8, 16, 32], list(classes),
                      "")


#: GluonCV's anchors per output layer, small to large.
COCO_ANCHOR_LAYERS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119],
                      [116, 90, 156, 198, 373, 326]]


def build(network, classes, pretrained_base=False, init_params=None, focal_alpha=None,
          focal_gamma=None, ctx=None, anchors=None, head_scale=1.0):
    """Build and initialise a GluonCV YOLOv3 detector.

    Parameters
    ----------
    network : str
        One of :data:`NETWORKS`.
    classes : list of str
        Foreground class names, e.g. ``["lesion"]``.
    pretrained_base : bool
        Load GluonCV's ImageNet weights into the backbone (the heads start random).
    init_params : str or Path, optional
        A ``.params`` file for the whole detector; loaded after initialisation.
    focal_alpha, focal_gamma : float, optional
        When either is given, the objectness loss becomes a focal loss
        (``models.yolo_loss.use_focal_objectness``); the missing one takes its neutral value
        (alpha 0.5, gamma 0).
    ctx : mx.Context or list of mx.Context, optional
        Where the parameters live (default CPU).
    anchors : array_like, optional
        ``(9, 2)`` anchors in input pixels, small to large (:func:`set_anchors`); default
        GluonCV's COCO anchors. ``init_params`` overrides them with the file's.
    head_scale : float
        Width of the detection heads relative to the zoo network's (1: the zoo's own).

    Returns
    -------
    gluoncv.model_zoo.yolo.yolo3.YOLOV3
        Initialised, not hybridised.

    Raises
    ------
    ValueError
        Unknown ``network`` or empty ``classes``.
    WeightsUnavailableError
        ``pretrained_base`` asked for weights that can be neither found nor downloaded.
    FileNotFoundError
        ``init_params`` does not exist.
    """
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; choose one of {', '.join(NETWORKS)}")
    if not classes:
        raise ValueError("classes is empty; the detector needs at least one class name")
    ctx = ctx or [mx.cpu()]
    try:
        net = zoo_network(network, classes, pretrained_base, head_scale)
    except Exception as err:  # requests/urllib/OSError/RuntimeError: the zoo is not specific
        if not pretrained_base:
            raise
        backbone = _BACKBONE[network]
        raise WeightsUnavailableError(
            f"--pretrained-base: could not load GluonCV's ImageNet weights for {backbone} "
            f"({type(err).__name__}: {err}). Looked in {_model_home()} (set by MXNET_HOME) and "
            f"tried to download them, which needs network access. Copy the file "
            f"'{backbone}-<sha1[:8]>.params' there from a machine with network access "
            f"(python -c \"import gluoncv; gluoncv.model_zoo.get_model('{network}', "
            f"classes=['x'], pretrained_base=True)\" fetches it), or pass --init-params PATH, "
            f"or drop --pretrained-base to train from scratch.") from err
    with warnings.catch_warnings():
        # initialize() warns about the backbone parameters that are already loaded.
        warnings.simplefilter("ignore")
        net.initialize(ctx=ctx)
    # Finish Gluon's deferred initialisation now: a dist kvstore pushes the initial weights
    # before the first training step, and save_parameters needs concrete shapes.
    ctx0 = ctx[0] if isinstance(ctx, (list, tuple)) else ctx
    net(mx.nd.zeros((1, 3, 64, 64), ctx=ctx0))
    if anchors is not None:
        set_anchors(net, anchors)
    if init_params:
        load_params(net, init_params, ctx)
    if focal_alpha is not None or focal_gamma is not None:
        from models.yolo_loss import use_focal_objectness
        alpha = 0.5 if focal_alpha is None else focal_alpha
        gamma = 0.0 if focal_gamma is None else focal_gamma
        use_focal_objectness(net, alpha, gamma)
        log.info("objectness loss: focal (alpha=%g, gamma=%g)", alpha, gamma)
    return net


def load_params(net, path, ctx=None):
    """Load a whole-detector ``.params`` file with a message that names the mismatch."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--init-params {path}: no such file")
    try:
        net.load_parameters(str(path), ctx=ctx or [mx.cpu()])
    except (AssertionError, mx.base.MXNetError, ValueError) as err:
        raise ValueError(
            f"{path} does not fit this detector ({net.name}, classes {list(net.classes)}): "
            f"{str(err).splitlines()[0]}. It must be saved from the same --network with the "
            f"same classes.") from err
    log.info("detector initialised from %s", path)


def set_anchors(net, anchors):
    """Replace the anchors of a built YOLOv3 net (``(9, 2)`` width, height in input pixels,
    small to large; ``models.anchors.fit_anchors``).

    The anchors are Constant parameters of the output layers: they are used by the forward
    pass (box decoding, the train transform's target assignment through ``net(fake_x)``),
    saved with ``save_parameters`` and restored by ``load_parameters``.
    """
    from models.anchors import layers
    per_layer = layers(anchors)  # small to large; net.yolo_outputs run large to small
    for out, values in zip(net.yolo_outputs, per_layer[::-1]):
        param = out.anchors
        param.set_data(mx.nd.array(values, dtype="float32").reshape(param.shape))


def init_output_priors(net, objects_per_image, data_shape, class_prior=0.5):
    """Start the objectness and class outputs at the data's base rates, not at 0.5.

    At GluonCV's zero bias every one of the ~1000 anchor positions of a 128 px input predicts
    objectness 0.5, so the first hundreds of updates of a from-scratch run only learn that
    almost everything is background (an objectness loss of ~400 per image). RetinaNet's
    prior initialisation (Lin et al. 2017, section 4.1) and Ultralytics' ``_initialize_biases``
    set the output bias to the logit of the expected positive rate instead: here
    ``objects_per_image`` spread over the output layers (each box is assigned to one anchor
    of one layer), divided by the layer's cells x anchors at ``data_shape``. The class biases
    start at ``logit(class_prior)`` (with one class its score multiplies the objectness).

    Parameters
    ----------
    net : YOLOV3 (initialised)
    objects_per_image : float
        Mean number of boxes per training image.
    data_shape : int
        Training input size in pixels.
    """
    import math
    layers = list(net.yolo_outputs)
    for out in layers:
        cells = (data_shape / float(out._stride)) ** 2
        rate = min(max(objects_per_image / len(layers) / (cells * out._num_anchors), 1e-6),
                   0.5)
        bias = out.prediction.bias
        values = bias.data().asnumpy().reshape(out._num_anchors, out._num_pred)
        values[:, 4] = math.log(rate / (1.0 - rate))
        values[:, 5:] = math.log(class_prior / (1.0 - class_prior))
        bias.set_data(mx.nd.array(values.reshape(-1)))


def get_anchors(net):
    """The net's anchors as a ``(9, 2)`` list, small to large (the order ``set_anchors`` takes)."""
    per_layer = [out.anchors.data().asnumpy().reshape(-1, 2).tolist()
                 for out in net.yolo_outputs]
    return [wh for layer in per_layer[::-1] for wh in layer]


def transform_net(network, classes, anchors=None, head_scale=1.0):
    """A fresh, initialised, never hybridised copy for building training transforms.

    ``YOLO3DefaultTrainTransform`` runs this net once in train mode to get anchors and
    offsets; a hybridised net holding the inference graph fails there (MXNET_TRAPS 15), and
    under AMP the transforms must come from an fp32 net built before ``amp.init`` (TRAPS 42).
    Anchors and offsets depend on the architecture and ``anchors`` only, so random weights
    are fine.
    """
    return build(network, classes, pretrained_base=False, anchors=anchors,
                 head_scale=head_scale)


def model_json(network, classes, data_shape, members, offset=1, fusion_iou=FUSION_IOU,
               head_scale=1.0):
    """The ``model.json`` record of docs/CONTRACTS.md.

    ``members`` are parameter files relative to the run folder: one (a single model) or the
    k fold models of an ensemble, whose detections ``predict_models`` fuses by weighted box
    fusion at ``fusion_iou`` (default ``yolo_train.FUSION_IOU``). ``offset`` is the box
    convention the threshold was chosen with.
    """
    members = [str(m) for m in ([members] if isinstance(members, (str, Path)) else members)]
    return {"net": network, "classes": list(classes), "data_shape": int(data_shape),
            "members": members, "offset": int(offset), "head_scale": float(head_scale),
            "fusion": {"method": "wbf", "iou": float(fusion_iou)}}


def load_model_json(path, ctx=None):
    """Rebuild a trained detector (one net or an ensemble) from ``model.json``.

    Parameters
    ----------
    path : str or Path
        ``model.json`` written by train_yolo3.py; its parameter paths are relative to its
        folder (``members``, or the single ``params`` of older runs).
    ctx : mx.Context or list, optional

    Returns
    -------
    (nets, info) : (list of YOLOV3, dict)
        The initialised nets with their trained weights (anchors included), and the record.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    members = info.get("members") or ([info["params"]] if "params" in info else None)
    missing = [k for k in ("net", "classes", "data_shape") if k not in info]
    if missing or not members:
        raise ValueError(f"{path}: missing key(s) {missing or ['members']}; want net, classes, "
                         f"data_shape, members")
    nets = []
    for m in members:
        net = build(info["net"], info["classes"], ctx=ctx,
                    head_scale=info.get("head_scale", 1.0))
        load_params(net, path.parent / m, ctx)
        nets.append(net)
    return nets, info
