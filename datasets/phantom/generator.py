"""Synthetic raw data set in the clinic's form: dual-panel B-mode screenshots + annotations.

Usage: ``python -m datasets.phantom --out RAW --num 200 --seed 0 [--preview] [--single-panel]``

Writes ``RAW/scan_0000.jpg`` (red boxes burnt in) or ``RAW/scan_0000.png|.jpg`` +
``RAW/scan_0000.json`` (labelme, clean image), and ``RAW/truth.json`` with the exact boxes
(docs/CONTRACTS.md, "Raw phantom set"). Screenshot ``i`` depends only on ``(seed, i)``,
so a larger ``--num`` extends a set without changing its first images; same seed, same bytes,
whichever kernels OpenBLAS, NumPy and OpenCV pick on an x86-64 CPU with AVX2 (README, "Phantom
data": version 2 sums its convolutions in one order; version 1's ``np.convolve`` moved a few
grey levels with OpenBLAS's per-CPU kernel).
``--label-by-kind`` labels each labelme shape by its lesion's kind (``hypo`` / ``hetero``), a
two-class set; red boxes carry no label (prepare_data gives them ``--red-label``, ``lesion``
by default, and truth.json says so), so add ``--labelme-frac 1`` for a set of only those two
classes. The images are the same bytes with or without it.

``--single-panel`` draws the stand-in for single-panel ultrasound instead: one B-mode panel
filling the picture (no black border, no scanner text, no contralateral panel), landscape,
width 520-600 and height 440-500 px drawn uniformly (``--sizes`` overrides), 3-5 lesions
mostly, as in an affected dual-panel half (the same renderer at the scale of the panel's
shorter side: the halves' lesion sizes, contrast and look-alikes), every image annotated by
labelme polygons (``lesion``, or the kind with
``--label-by-kind``), PNG (80 %) or JPEG. truth.json then has ``panels: {"full": [0, 0, W,
H]}`` and side ``full`` everywhere; ``prepare_data.py --no-crop --no-split`` prepares it.
``--labelme-frac`` and ``--both-sides-frac`` do not apply. The dual-panel set of a seed is
the same bytes as before the option existed.
Rendering is in :mod:`datasets.phantom.scene`, the ink and labelme shapes in
:mod:`datasets.phantom.annotation`; ``python -m datasets.phantom`` runs :func:`main` here.
"""
import argparse
import json
import logging
import re
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from datasets.phantom import annotation as ann
from datasets.phantom.scene import (SINGLE_HEIGHTS, SINGLE_WIDTHS, SIZES,  # noqa: F401
                                    Screenshot, render_pair, render_single)
from infra.atomic import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)
CLASSES = ["lesion"]
#: What truth.json's ``phantom_version`` says: 2 since the in-order convolution
#: (scene.convolve_in_order); a truth.json without the key is version 1, whose grey levels
#: depended on the CPU. A new version is a new set of bytes for the same seed.
PHANTOM_VERSION = 2
_OWN_FILE = re.compile(r"^scan_\d{4,}\.(jpg|png|json)$")


def image_rng(seed, index):
    """Generator of screenshot ``index``: independent of how many screenshots are drawn."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index),)))


def _encode(image, ext, quality=95):
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else \
        [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {ext}")
    return buf.tobytes()


def make_example(seed, index, labelme_frac=0.4, both_sides_frac=0.15, sizes=None,
                 label_by_kind=False, single_panel=False):
    """Render and annotate screenshot ``index`` of the set with ``seed``, in memory.

    With ``label_by_kind`` a labelme shape's label is its lesion's kind (``hypo`` or
    ``hetero``) instead of ``lesion``; red boxes stay ``lesion``. ``single_panel`` renders
    one panel filling the image (``scene.render_single``), annotated by labelme
    polygons; ``labelme_frac`` and ``both_sides_frac`` are then not used.

    Returns
    -------
    (dict, dict, Screenshot)
        ``files``: file name -> bytes; ``record``: its truth.json entry; the clean screenshot.
    """
    rng = image_rng(seed, index)
    if single_panel:
        shot = render_single(rng, sizes=sizes)
    else:
        shot = render_pair(rng, sizes=sizes, both_sides_frac=both_sides_frac)
    stem = f"scan_{index:04d}"
    h, w = shot.image.shape[:2]
    files = {}
    # single panel: the real held-out sets are labelme polygons, every one of them
    if single_panel or rng.random() < labelme_frac:
        shape_type = "polygon" if single_panel else None
        shapes = [ann.labelme_shape(rng, les, les.kind if label_by_kind else ann.LABEL,
                                    shape_type) for les in shot.lesions]
        ext = ".png" if rng.random() < 0.8 else ".jpg"
        name = stem + ext
        files[name] = _encode(shot.image, ext, quality=int(rng.integers(90, 96)))
        doc = ann.labelme_document(shapes, name, w, h)
        files[stem + ".json"] = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
        boxes = [ann.shape_box(s) for s in shapes]
        labels = [s["label"] for s in shapes]
        annotation, labelme = "labelme", stem + ".json"
    else:
        inked, boxes = ann.burn_red_boxes(rng, shot.image, [les.box for les in shot.lesions])
        labels = [CLASSES[0]] * len(boxes)
        name = stem + ".jpg"
        files[name] = _encode(inked, ".jpg", quality=int(rng.integers(70, 96)))
        annotation, labelme = "red", None
    record = {
        "file": name, "annotation": annotation, "labelme": labelme, "width": w, "height": h,
        "panels": {k: [float(v) for v in p] for k, p in shot.panels.items()},
        "boxes": [{"side": les.side, "box": [float(v) for v in b], "class": lab}
                  for les, b, lab in zip(shot.lesions, boxes, labels)],
        "lookalikes": [{"box": [float(v) for v in lk["box"]], "kind": lk["kind"]}
                       for lk in shot.lookalikes],
    }
    return files, record, shot


def draw_preview(out_dir, records, n=6, width=640):
    """Contact sheet of the first ``n`` screenshots, truth boxes green, look-alikes blue."""
    tiles = []
    for rec in records[:n]:
        img = cv2.imread(str(Path(out_dir) / rec["file"]), cv2.IMREAD_COLOR)
        for b in rec["boxes"]:
            x1, y1, x2, y2 = (int(round(v)) for v in b["box"])
            cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), 2)
        for b in rec["lookalikes"]:
            x1, y1, x2, y2 = (int(round(v)) for v in b["box"])
            cv2.rectangle(img, (x1, y1), (x2, y2), (255, 160, 0), 1)
        s = width / img.shape[1]
        img = cv2.resize(img, (width, int(round(img.shape[0] * s))), interpolation=cv2.INTER_AREA)
        img = cv2.copyMakeBorder(img, 0, 20, 0, 0, cv2.BORDER_CONSTANT, value=(60, 60, 60))
        cv2.putText(img, f"{rec['file']}  {rec['annotation']}  {len(rec['boxes'])} lesions",
                    (6, img.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1,
                    cv2.LINE_AA)
        tiles.append(img)
    if not tiles:
        return None
    rows = []
    for i in range(0, len(tiles), 2):
        pair = tiles[i:i + 2]
        hmax = max(t.shape[0] for t in pair)
        pair = [cv2.copyMakeBorder(t, 0, hmax - t.shape[0] + 4, 0, 4, cv2.BORDER_CONSTANT,
                                   value=(60, 60, 60)) for t in pair]
        if len(pair) == 1:
            pair.append(np.full_like(pair[0], 60))
        rows.append(np.hstack(pair))
    sheet = np.vstack(rows)
    path = Path(out_dir) / "preview.png"
    atomic_write_bytes(path, _encode(sheet, ".png"))
    return path


def generate(out_dir, num, seed=0, preview=False, labelme_frac=0.4, both_sides_frac=0.15,
             sizes=None, progress=True, label_by_kind=False, single_panel=False):
    """Write a raw phantom set of ``num`` screenshots into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
    num : int
        Number of screenshots (names ``scan_0000`` ...).
    seed : int
    preview : bool
        Also write ``out_dir/preview.png``.
    labelme_frac : float
        Fraction of screenshots annotated with labelme JSON instead of red ink.
    both_sides_frac : float
        Fraction of screenshots with lesions in both halves.
    sizes : sequence of (W, H), optional
        Canvas sizes to draw from (default ``scene.SIZES``; single panel: widths
        ``SINGLE_WIDTHS`` x heights ``SINGLE_HEIGHTS``).
    progress : bool
        Show a tqdm progress bar.
    label_by_kind : bool
        Label labelme shapes by lesion kind (``hypo`` / ``hetero``) instead of ``lesion``.
    single_panel : bool
        One panel filling each picture, labelme polygons (see the module docstring);
        ``labelme_frac`` and ``both_sides_frac`` are not used.

    Returns
    -------
    dict
        Summary: out, num, seed, single_panel, n_red, n_labelme, n_boxes, classes,
        n_lookalikes, seconds, images_per_s, preview (path or None), removed (stale files
        deleted).
    """
    num = int(num)
    if num < 0:
        raise ValueError(f"--num must be >= 0, got {num}")
    for name, v in (("labelme_frac", labelme_frac), ("both_sides_frac", both_sides_frac)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {v}")
    if sizes is not None:
        sizes = [tuple(int(v) for v in s) for s in sizes]
        for s in sizes:
            if len(s) != 2:
                raise ValueError(f"sizes: want (W, H) pairs, got {s}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in out.iterdir() if _OWN_FILE.match(p.name)}
    t0 = time.perf_counter()
    records, written = [], set()
    for i in tqdm(range(num), desc="phantom", unit="img", disable=not progress):
        files, record, _ = make_example(seed, i, labelme_frac, both_sides_frac, sizes,
                                        label_by_kind, single_panel)
        # image before its JSON, so a labelme file never points at a missing image
        for name in sorted(files, key=lambda n: n.endswith(".json")):
            atomic_write_bytes(out / name, files[name])
            written.add(name)
        records.append(record)
    # files of an earlier, larger or differently annotated set would confuse prepare_data
    stale = sorted(before - written)
    for name in stale:
        (out / name).unlink()
    if stale:
        log.info("removed %d stale files from an earlier set in %s", len(stale), out)
    classes = sorted({b["class"] for r in records for b in r["boxes"]}) \
        if label_by_kind else CLASSES
    atomic_write_json(out / "truth.json", {"seed": int(seed), "phantom_version": PHANTOM_VERSION,
                                           "classes": classes, "images": records})
    seconds = time.perf_counter() - t0
    prev = draw_preview(out, records) if preview else None
    summary = {
        "out": str(out), "num": num, "seed": int(seed), "phantom_version": PHANTOM_VERSION,
        "single_panel": bool(single_panel),
        "n_red": sum(r["annotation"] == "red" for r in records),
        "n_labelme": sum(r["annotation"] == "labelme" for r in records),
        "n_boxes": sum(len(r["boxes"]) for r in records), "classes": classes,
        "n_lookalikes": sum(len(r["lookalikes"]) for r in records),
        "seconds": round(seconds, 3), "images_per_s": round(num / max(seconds, 1e-9), 2),
        "preview": str(prev) if prev else None, "removed": len(stale),
    }
    log.info("wrote %d screenshots (%d red, %d labelme, %d boxes) to %s in %.1f s (%.1f/s)",
             num, summary["n_red"], summary["n_labelme"], summary["n_boxes"], out, seconds,
             summary["images_per_s"])
    return summary


def _size(text):
    m = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"want a canvas size like 1024x768, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m datasets.phantom", description=__doc__,
                                allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder for the raw set")
    p.add_argument("--num", type=int, default=200, help="number of screenshots (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--preview", action="store_true", help="also write OUT/preview.png")
    p.add_argument("--labelme-frac", type=float, default=None,
                   help="fraction annotated by labelme JSON instead of red ink (default: 0.4)")
    p.add_argument("--both-sides-frac", type=float, default=None,
                   help="fraction with lesions in both halves (default: 0.15)")
    p.add_argument("--single-panel", action="store_true",
                   help="one B-mode panel per picture, no border, text or second panel, "
                        f"{SINGLE_WIDTHS[0]}-{SINGLE_WIDTHS[1]} x "
                        f"{SINGLE_HEIGHTS[0]}-{SINGLE_HEIGHTS[1]} px, labelme polygons "
                        "(prepare with --no-crop --no-split)")
    p.add_argument("--sizes", type=_size, nargs="+", default=None, metavar="WxH",
                   help="canvas sizes to draw from (default: " +
                   " ".join(f"{w}x{h}" for w, h in SIZES) + "; --single-panel: the ranges "
                   "above)")
    p.add_argument("--label-by-kind", action="store_true",
                   help="label labelme shapes by lesion kind (hypo, hetero): a two-class set; "
                        "red boxes stay one class (prepare_data --red-label)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    args = p.parse_args(argv)
    if args.single_panel:
        given = [f for f, v in (("--labelme-frac", args.labelme_frac),
                                ("--both-sides-frac", args.both_sides_frac)) if v is not None]
        if given:
            p.error(f"{' and '.join(given)} do not apply with --single-panel (every picture "
                    f"is one panel annotated by labelme polygons); drop them")
    args.labelme_frac = 0.4 if args.labelme_frac is None else args.labelme_frac
    args.both_sides_frac = 0.15 if args.both_sides_frac is None else args.both_sides_frac
    return args


def main(args):
    return generate(args.out, args.num, seed=args.seed, preview=args.preview,
                    labelme_frac=args.labelme_frac, both_sides_frac=args.both_sides_frac,
                    sizes=args.sizes, progress=args.progress, label_by_kind=args.label_by_kind,
                    single_panel=args.single_panel)
