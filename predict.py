"""Two-stage prediction on raw screenshots: detector on each half, filter against the other.

    python predict.py --detector runs/demo/NAME/detector --filter runs/demo/NAME/filter \\
        SCREENSHOT_OR_FOLDER [...] [--out runs/predict] [--gpus 0]

Each screenshot goes through the same preparation as training (red ink painted out, black
border cropped by scan lines, split at the midline). The detector runs on both halves, since
a new screenshot does not say which side is strained; every detection is then compared with
the same place in the other half (similar-region search, fused crop) and scored by the
filter. A box is kept when its detector score reaches the detector's operating threshold and
its filter score reaches the filter's threshold (both fixed by training, not here).

Writes into its run folder: ``predictions/<name>.json`` (boxes in source-screenshot pixels, class,
detector score, filter score, kept or why not), ``detection-results/<name>.txt`` (kept boxes,
Cartucho layout, source pixels), ``vis/<name>.png`` (kept boxes green, rejected by the filter
red dashed, with scores) and ``summary.json``.
"""
import argparse
import logging
from pathlib import Path

import cv2
import infra.openmp  # noqa: F401  (OpenMP's defaults before mxnet loads)
import mxnet as mx
import numpy as np
from mxnet import gluon
from tqdm import tqdm

from datasets.detector import data as detection_data
from datasets.filter.crops import fusion as crop_fusion
from datasets.filter.crops import labels as crop_labels
from datasets.filter.crops import options as crop_options
from datasets.prepared import preprocess, redbox
from datasets.prepared.images import read_image
from eval.detection_io import write_cartucho
from infra import runs
from infra.atomic import atomic_write_bytes, atomic_write_json
from models import devices, filter_net, yolo, yolo_train

log = logging.getLogger("predict")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
KEPT, REJECTED_FILTER, BELOW_DETECTOR = "kept", "rejected_by_filter", "below_detector_threshold"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="screenshots and/or folders of screenshots")
    p.add_argument("--detector", required=True,
                   help="train_yolo3.py run folder (holds model.json)")
    p.add_argument("--filter", default=None,
                   help="train_filter.py run folder (holds filter.json); omit for detector only")
    p.add_argument("--det-threshold", type=float, default=None,
                   help="detector score threshold (default: model.json's score_threshold, the "
                        "best F-beta on out-of-fold detections, F2 unless train_yolo3.py was "
                        "given --threshold-beta)")
    p.add_argument("--filter-threshold", type=float, default=None,
                   help="filter score threshold (default: filter.json's, chosen on validation)")
    p.add_argument("--batch-size", type=int, default=8, help="halves per detector batch")
    p.add_argument("--no-crop", action="store_true", help="keep the black border")
    p.add_argument("--no-split", action="store_true",
                   help="single-panel images (no reference half, so no filter)")
    p.add_argument("--keep-ink", action="store_true",
                   help="do not paint out red annotation ink before detection")
    p.add_argument("--no-vis", action="store_true", help="skip the visualisation PNGs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    devices.add_device_arguments(p)
    runs.add_run_arguments(p, "predict")
    return p.parse_args(argv)


def list_inputs(paths):
    """Image files named directly or found (not recursively) in folders, sorted per folder."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"input {p} does not exist")
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {paths}")
    return files


def split_screenshot(img, crop=True, split=True, remove_ink=True):
    """The training-time preparation: ink out, border cropped, halves.

    Returns
    -------
    clean : ndarray, the screenshot with ink painted out (BGR)
    halves : dict side -> (x0, y0, x1, y1) in source pixels
    info : dict with the crop rectangle and how it was found
    """
    clean = redbox.remove_ink(img)[0] if remove_ink else img
    if crop:
        rect, info = preprocess.find_crop(clean)
    else:
        rect, info = (0, 0, img.shape[1], img.shape[0]), {"method": "none"}
    return clean, preprocess.panel_rects(rect, split=split), dict(info, crop=list(rect))


def detect(nets, halves_bgr, data_shape, ctx, batch_size, score_thresh, top_k, fusion_iou):
    """Detector boxes for a list of BGR halves, in each half's pixels (an ensemble's fused)."""
    items = [(mx.nd.array(h[:, :, ::-1].copy(), dtype="uint8"), np.zeros((1, 6), np.float32))
             for h in halves_bgr]
    loader = detection_data.val_loader(gluon.data.SimpleDataset(items), data_shape, batch_size)
    return yolo_train.predict_models(nets, loader, ctx, score_thresh, top_k, fusion_iou)


def score_detections(fnet, spec, lesion_gray, reference_gray, det, ctx):
    """Filter scores (nan where the filter does not look: below min-score or past top-k)."""
    scores = np.full(len(det["scores"]), np.nan)
    idx = crop_labels.select_detections(det["scores"], spec.get("min_score", 0.0),
                                         spec.get("top_k", 0))
    h, w = lesion_gray.shape
    b = det["boxes"][idx]
    # Boxes clipped to nothing inside the half cannot be cut out (the crop builder drops
    # them too); they stay unscored and so are not kept.
    inside = (np.minimum(b[:, 2], w) - np.maximum(b[:, 0], 0) >= 1) & \
             (np.minimum(b[:, 3], h) - np.maximum(b[:, 1], 0) >= 1)
    idx = idx[inside]
    if len(idx):
        crops, _ = crop_fusion.crops_for_detections(
            lesion_gray, reference_gray, det["boxes"][idx], crop_options.search_kwargs_from(spec),
            size=spec.get("crop_size", crop_fusion.CROP_SIZE))
        scores[idx] = filter_net.score_crops(fnet, crops, ctx)
    return scores


def decide(det_score, filter_score, det_threshold, filter_threshold):
    if det_score < det_threshold:
        return BELOW_DETECTOR
    if filter_threshold is not None and not (filter_score >= filter_threshold):
        return REJECTED_FILTER
    return KEPT


def draw(img, records, path):
    """Kept boxes solid green, filter-rejected ones dashed red, with detector/filter scores."""
    vis = img.copy()
    for r in records:
        if r["status"] == BELOW_DETECTOR:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in r["box"])
        kept = r["status"] == KEPT
        color = (60, 220, 60) if kept else (40, 40, 230)
        if kept:
            cv2.rectangle(vis, (x1, y1), (x2, y2), color, 2)
        else:
            _dashed_rect(vis, (x1, y1, x2, y2), color)
        fs = "" if r["filter_score"] is None else f" f{r['filter_score']:+.2f}"
        cv2.putText(vis, f"d{r['det_score']:.2f}{fs}", (x1, max(12, y1 - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", vis)
    atomic_write_bytes(path, buf.tobytes())


def _dashed_rect(img, box, color, dash=6):
    x1, y1, x2, y2 = box
    for a, b, horizontal, fixed in ((x1, x2, True, y1), (x1, x2, True, y2),
                                    (y1, y2, False, x1), (y1, y2, False, x2)):
        for s in range(a, b, 2 * dash):
            e = min(s + dash, b)
            p, q = ((s, fixed), (e, fixed)) if horizontal else ((fixed, s), (fixed, e))
            cv2.line(img, p, q, color, 2)


def main(args):
    ctx = devices.contexts(args.gpus)
    with runs.start("predict", args) as run:
        return predict_all(run, args, ctx)


def predict_all(run, args, ctx):
    """Detector on both halves of every input, filter on each detection; writes the
    run folder's predictions, Cartucho files, pictures and summary."""
    nets, det_info = yolo.load_model_json(Path(args.detector) / "model.json", ctx=ctx)
    det_threshold = args.det_threshold
    if det_threshold is None:
        det_threshold = det_info.get("score_threshold")
        if det_threshold is None:
            det_threshold = 0.5
            log.warning("model.json has no score_threshold; using %.2f", det_threshold)
    fnet, spec, filter_threshold = None, {}, None
    if args.filter and not args.no_split:
        fnet, spec = filter_net.load_filter(Path(args.filter) / "filter.json", ctx=ctx)
        filter_threshold = (spec["threshold"] if args.filter_threshold is None
                            else args.filter_threshold)
    # The detector keeps everything the filter could look at; the thresholds decide later.
    score_floor = min(det_threshold, spec.get("min_score", det_threshold))
    files = list_inputs(args.inputs)
    classes = det_info["classes"]  # the detector's classes (model.json), in id order
    fusion_iou = det_info.get("fusion", {}).get("iou", yolo_train.FUSION_IOU)
    dets_src, skipped, counts = {}, [], {KEPT: 0, REJECTED_FILTER: 0, BELOW_DETECTOR: 0}
    for path in tqdm(files, desc="predict", unit="img", disable=args.no_progress):
        try:
            img = read_image(path)
        except (ValueError, OSError) as err:
            skipped.append({"file": str(path), "reason": str(err)})
            log.warning("skipped %s: %s", path, err)
            continue
        clean, halves, info = split_screenshot(img, crop=not args.no_crop,
                                               split=not args.no_split,
                                               remove_ink=not args.keep_ink)
        sides = list(halves)
        arrays = [clean[y0:y1, x0:x1] for x0, y0, x1, y1 in (halves[s] for s in sides)]
        dets = detect(nets, arrays, det_info["data_shape"], ctx, args.batch_size, score_floor,
                      spec.get("top_k") or 100, fusion_iou)
        grays = [cv2.cvtColor(a, cv2.COLOR_BGR2GRAY) for a in arrays]
        records = []
        for k, side in enumerate(sides):
            d = dets[k]
            fscores = np.full(len(d["scores"]), np.nan)
            if fnet is not None and len(d["scores"]):
                fscores = score_detections(fnet, spec, grays[k], grays[1 - k], d, ctx)
            x0, y0 = halves[side][:2]
            for box, s, fs, lab in zip(d["boxes"], d["scores"], fscores, d["labels"]):
                status = decide(s, fs, det_threshold, filter_threshold)
                counts[status] += 1
                records.append({
                    "side": side, "label": int(lab), "class": classes[int(lab)],
                    "box": [float(box[0] + x0), float(box[1] + y0),
                            float(box[2] + x0), float(box[3] + y0)],
                    "box_half": [float(v) for v in box], "det_score": float(s),
                    "filter_score": None if np.isnan(fs) else float(fs), "status": status})
        name = path.stem
        atomic_write_json(run.path("predictions", f"{name}.json"), {
            "source": str(path), "width": img.shape[1], "height": img.shape[0],
            "halves": {s: list(r) for s, r in halves.items()}, "crop": info["crop"],
            "crop_method": info["method"], "det_threshold": det_threshold,
            "filter_threshold": filter_threshold, "detections": records})
        kept = [r for r in records if r["status"] == KEPT]
        dets_src[name] = {"boxes": np.array([r["box"] for r in kept]).reshape(-1, 4),
                          "scores": np.array([r["det_score"] for r in kept]),
                          "labels": np.array([r["label"] for r in kept], int)}
        if not args.no_vis:
            draw(img, records, run.path("vis", f"{name}.png"))
    write_cartucho(run.dir, classes, det=dets_src)
    summary = {"images": len(dets_src), "skipped": skipped, "det_threshold": det_threshold,
               "filter_threshold": filter_threshold, "boxes": counts,
               "detector": str(args.detector), "filter": args.filter}
    log.info("%d screenshots: %d boxes kept, %d rejected by the filter, %d skipped files",
             len(dets_src), counts[KEPT], counts[REJECTED_FILTER], len(skipped))
    return run.finish(summary)


if __name__ == "__main__":
    main(parse_args())
