"""Export a prepared DATA folder for PyTorch ports: YOLO (Ultralytics/darknet) or COCO.

Usage: ``python export_data.py --data DATA --format yolo|coco --out OUT``

Writes the exact test split and folds of ``DATA/splits.json`` (docs/CONTRACTS.md, "Export"):
images under ``OUT/images/<id>.jpg`` (hard links when DATA and OUT share a file system,
else copies), and

* yolo: ``OUT/labels/<id>.txt`` (``class cx cy w h``, normalised by the image size), the
  lists ``train.txt``, ``test.txt``, ``fold<k>_train.txt``, ``fold<k>_val.txt`` (one
  ``./images/<id>.jpg`` per line) and Ultralytics data YAMLs ``fold<k>.yaml`` and
  ``train_test.yaml`` (``path``, ``train``, ``val``, ``names``);
* coco: ``OUT/train.json``, ``test.json``, ``fold<k>_train.json``, ``fold<k>_val.json``
  (instances; ``bbox`` ``[x, y, w, h]`` pixels; ``category_id`` = class index + 1; every
  image keeps its integer ``id`` across the files and carries our ``sample_id``).

Boxes are the VOC boxes as GluonCV reads them. ``OUT/score/<split>/ground-truth/`` (test,
train, fold<k>_val) is the ground truth of each split in the Cartucho layout: score a port's
detections with ``python -m eval.detection --gt OUT/score/test/ground-truth --dr DETECTIONS``
(README, "Comparing with a PyTorch port"). OUT must be empty, absent or an earlier export (which is
replaced); anything else needs ``--overwrite``.
"""
import argparse
import logging
from pathlib import Path

from datasets.prepared import export
from infra.atomic import atomic_write_json

log = logging.getLogger("export_data")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepare_data.py output folder")
    p.add_argument("--format", required=True, choices=export.FORMATS, help="output layout")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--difficult", choices=export.DIFFICULT, default="keep",
                   help="difficult boxes (labelme __ignore__): keep as ordinary boxes, as our "
                        "detector trains; drop; or crowd (COCO iscrowd regions, dropped in "
                        "YOLO) (default %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out that is not an earlier export")
    return p.parse_args(argv)


def main(args):
    data, out = Path(args.data), Path(args.out)
    if not (data / "splits.json").is_file():
        raise ValueError(f"--data {data}: no splits.json; want a prepare_data.py output folder")
    if out.resolve() == data.resolve() or data.resolve() in out.resolve().parents:
        raise ValueError(f"--out {out} is inside --data {data}; choose another folder")
    if out.is_dir() and any(out.iterdir()):
        if export.clear_previous(out):
            log.info("%s held an earlier export; replaced", out)
        elif not args.overwrite:
            raise ValueError(f"--out {out} is not empty and not an earlier export; choose an "
                             f"empty folder or add --overwrite")
    summary = export.export(data, out, args.format, args.difficult)
    atomic_write_json(out / export.MARKER, {"args": vars(args), **summary})
    log.info("exported %d images, %d boxes (%d difficult: %s) of %s as %s into %s "
             "(%d linked, %d copied)", summary["images"], summary["boxes"], summary["difficult"],
             args.difficult, data, args.format, out, summary["linked"], summary["copied"])
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main(parse_args())
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"export_data: error: {err}")
