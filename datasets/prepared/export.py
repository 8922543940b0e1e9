"""A prepared DATA folder in the layouts PyTorch ports train on: YOLO txt and COCO JSON.

The export keeps our splits exactly (``DATA/splits.json``: the test ids, the training ids
and each fold's train/val ids) and our boxes exactly (the VOC boxes as
``gluoncv.data.VOCDetection`` reads them, ``[x1, y1, x2, y2]`` pixels, no +1), so a port
trains on the same images and its detections are scored by ``python -m eval.detection``
against the same ground truth (docs/CONTRACTS.md, "Export").

Difficult boxes (labelme ``__ignore__`` shapes, VOC ``difficult``): YOLO txt and COCO have no
such flag. ``keep`` (default) writes them as ordinary boxes, which is what our detector
trains on (GluonCV's train transform has no difficult flag either; the COCO annotation also
carries ``"difficult": 1``); ``drop`` leaves them out; ``crowd`` makes them COCO ``iscrowd``
regions, which COCO evaluation ignores and most COCO trainers skip (dropped in YOLO, which
has no such region). Scoring with ``eval.detection`` on ``DATA/Annotations`` ignores them in
every case. ``OUT/score/<split>/ground-truth/`` (test, train, fold<k>_val) holds the ground
truth of each scored split in the Cartucho layout, difficult flags included.
"""
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from datasets.prepared.classes import read_classes
from datasets.prepared.folder import SPLITS, read_manifest, read_splits
from datasets.prepared.voc import read_voc
from eval.detection_io import write_cartucho
from infra.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

FORMATS = ("yolo", "coco")
DIFFICULT = ("keep", "drop", "crowd")
MARKER = "export.json"
SCORE = "score"      # OUT/score/<split>/ground-truth/: Cartucho ground truth to score ports


def read_prepared(data_dir):
    """Classes, splits and every sample's size and boxes of a prepared folder.

    Returns
    -------
    dict
        ``{"classes": [...], "splits": splits.json, "samples": {id: {"width", "height",
        "objects": [{"name", "box", "difficult"}]}}}`` in manifest order, boxes as
        :func:`datasets.prepared.voc.read_voc` (and GluonCV) read them.
    """
    data_dir = Path(data_dir)
    splits = read_splits(data_dir)
    classes = read_classes(data_dir)
    samples = {}
    for row in read_manifest(data_dir):
        ann = read_voc(data_dir / "Annotations" / f"{row['id']}.xml")
        unknown = sorted({o["name"] for o in ann["objects"]} - set(classes))
        if unknown:
            raise ValueError(f"{data_dir}/Annotations/{row['id']}.xml: classes {unknown} are not "
                             f"in classes.txt {classes}; prepare the data again")
        samples[row["id"]] = {"width": ann["width"], "height": ann["height"],
                              "objects": ann["objects"]}
    missing = sorted(set(splits["train"] + splits["test"]) - set(samples))
    if missing:
        raise ValueError(f"{data_dir / SPLITS}: ids {missing[:5]} have no manifest row")
    return {"classes": classes, "splits": splits, "samples": samples}


def split_lists(splits):
    """``{name: ids}`` of every list the export writes: train, test, fold<k>_train/val."""
    out = {"train": splits["train"], "test": splits["test"]}
    for k, fold in enumerate(splits["folds"]):
        out[f"fold{k}_train"] = fold["train"]
        out[f"fold{k}_val"] = fold["val"]
    return out


def yolo_lines(sample, classes, difficult="keep"):
    """Ultralytics/darknet label lines of one image: ``class cx cy w h``, normalised by the
    image size. ``crowd`` regions do not exist in YOLO, so ``crowd`` drops them too."""
    w, h = sample["width"], sample["height"]
    objs = [o for o in sample["objects"] if difficult == "keep" or not o["difficult"]]
    lines = []
    for o in objs:
        x1, y1, x2, y2 = o["box"]
        vals = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
        lines.append(f"{classes.index(o['name'])} " + " ".join(f"{v:.6f}" for v in vals))
    return lines


def coco_instances(ids, prepared, image_ids, difficult="keep"):
    """A COCO instances document of the images ``ids``.

    Parameters
    ----------
    ids : list of str
        Sample ids, in the order of the split.
    prepared : dict
        :func:`read_prepared`.
    image_ids : dict
        Sample id -> integer COCO image id (the same in every file of one export).
    difficult : {"keep", "drop", "crowd"}

    Returns
    -------
    dict
        ``images`` (``id``, ``file_name`` ``<id>.jpg`` under ``images/``, ``width``,
        ``height``, ``sample_id``), ``annotations`` (``bbox`` ``[x, y, w, h]`` pixels,
        ``area`` = w * h, ``iscrowd``, ``category_id`` = class index + 1, ``difficult``),
        ``categories`` (``id``, ``name``).
    """
    classes, samples = prepared["classes"], prepared["samples"]
    images, anns = [], []
    for sid in ids:
        s = samples[sid]
        images.append({"id": image_ids[sid], "file_name": f"{sid}.jpg", "width": s["width"],
                       "height": s["height"], "sample_id": sid})
        for o in s["objects"]:
            if o["difficult"] and difficult == "drop":
                continue
            x1, y1, x2, y2 = o["box"]
            anns.append({"id": len(anns) + 1, "image_id": image_ids[sid],
                         "category_id": classes.index(o["name"]) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                         "iscrowd": int(bool(o["difficult"]) and difficult == "crowd"),
                         "difficult": int(o["difficult"])})
    return {"info": {"description": "export_data.py", "version": "1"}, "images": images,
            "annotations": anns,
            "categories": [{"id": i + 1, "name": c, "supercategory": "object"}
                           for i, c in enumerate(classes)]}


def _yaml_str(s):
    return json.dumps(str(s), ensure_ascii=False)  # a JSON string is a YAML string


def ultralytics_yaml(root, train, val, classes):
    """Ultralytics data YAML: ``path`` (absolute), ``train``/``val`` lists, ``names``."""
    lines = [f"# written by export_data.py: train on {train}, validate on {val}",
             f"path: {_yaml_str(Path(root).resolve())}", f"train: {_yaml_str(train)}",
             f"val: {_yaml_str(val)}", "names:"]
    lines += [f"  {i}: {_yaml_str(c)}" for i, c in enumerate(classes)]
    return "\n".join(lines) + "\n"


def ground_truth(samples, ids, classes):
    """``eval.detection`` ground truth (boxes, labels, difficult) of the samples ``ids``."""
    out = {}
    for sid in ids:
        objs = samples[sid]["objects"]
        out[sid] = {"boxes": np.array([o["box"] for o in objs], np.float64).reshape(-1, 4),
                    "labels": np.array([classes.index(o["name"]) for o in objs], int),
                    "difficult": np.array([bool(o["difficult"]) for o in objs], bool)}
    return out


def link_or_copy(src, dst):
    """Hard-link ``src`` to ``dst`` (same file system), else copy. Returns "link"/"copy"."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
        return "link"
    except OSError:
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
        return "copy"


def clear_previous(out):
    """Remove what an earlier export wrote into ``out`` (listed in its export.json)."""
    marker = Path(out) / MARKER
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    for name in files + ["images", "labels", SCORE]:
        p = Path(out) / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    marker.unlink()
    return True


def export(data_dir, out, fmt, difficult="keep"):
    """Write ``DATA`` as YOLO or COCO into ``out`` (see the module docstring).

    Returns
    -------
    dict
        Summary: format, out, classes, images, boxes, difficult (boxes flagged), written
        (file names at the top of ``out``), linked / copied image counts.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}; want one of {FORMATS}")
    if difficult not in DIFFICULT:
        raise ValueError(f"difficult {difficult!r}; want one of {DIFFICULT}")
    data_dir, out = Path(data_dir), Path(out)
    prepared = read_prepared(data_dir)
    classes, samples = prepared["classes"], prepared["samples"]
    lists = split_lists(prepared["splits"])
    used = [sid for sid in samples if any(sid in ids for ids in lists.values())]
    ways = {"link": 0, "copy": 0}
    for sid in used:
        ways[link_or_copy(data_dir / "JPEGImages" / f"{sid}.jpg",
                          out / "images" / f"{sid}.jpg")] += 1
    written = []
    if fmt == "yolo":
        for sid in used:
            text = "".join(line + "\n" for line in yolo_lines(samples[sid], classes, difficult))
            atomic_write_text(out / "labels" / f"{sid}.txt", text)
        for name, ids in lists.items():
            # "./" paths are read relative to the list's folder by Ultralytics.
            atomic_write_text(out / f"{name}.txt", "".join(f"./images/{i}.jpg\n" for i in ids))
            written.append(f"{name}.txt")
        pairs = [("train_test", "train.txt", "test.txt")]
        pairs += [(f"fold{k}", f"fold{k}_train.txt", f"fold{k}_val.txt")
                  for k in range(len(prepared["splits"]["folds"]))]
        for name, train, val in pairs:
            atomic_write_text(out / f"{name}.yaml", ultralytics_yaml(out, train, val, classes))
            written.append(f"{name}.yaml")
    else:
        image_ids = {sid: i + 1 for i, sid in enumerate(samples)}
        for name, ids in lists.items():
            atomic_write_json(out / f"{name}.json",
                              coco_instances(ids, prepared, image_ids, difficult))
            written.append(f"{name}.json")
    # Ground truth of every scored split in the Cartucho layout, so a port's detections
    # are scored on exactly these ids (and with their difficult flags, whatever --difficult).
    for name in ["test", "train"] + [n for n in lists if n.endswith("_val")]:
        write_cartucho(out / SCORE / name, classes, gt=ground_truth(samples, lists[name], classes))
    written.append(SCORE)
    return {"format": fmt, "out": str(out), "data": str(data_dir), "classes": classes,
            "difficult_policy": difficult, "images": len(used),
            "boxes": sum(len(samples[s]["objects"]) for s in used),
            "difficult": sum(o["difficult"] for s in used for o in samples[s]["objects"]),
            "lists": {k: len(v) for k, v in lists.items()}, "files": written,
            "linked": ways["link"], "copied": ways["copy"]}
