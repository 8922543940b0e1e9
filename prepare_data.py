"""Raw screenshots -> detection data: halves, VOC, manifest, grouped splits, one record file.

Usage: ``python prepare_data.py --raw RAW --out DATA [--folds 5 --test-frac 0.2 --seed 0]``

For every screenshot (red boxes burnt in, or labelme JSON): paint out the ink, crop the
black border, split at the midline, keep each half that holds boxes as a sample (the other
half is its reference), and write ``DATA/JPEGImages``, ``DATA/Reference``,
``DATA/Annotations`` (VOC), ``manifest.csv``, ``splits.json``, ``records/all.{lst,rec,idx}``,
``prepare_log.csv`` (every skipped file, clipped or dropped box, with its reason),
``classes.txt`` and ``summary.json`` (docs/CONTRACTS.md). Bad files are skipped with a
reason and counted;
``--strict`` stops at the first. ``--no-crop --no-split`` converts a plain labelme folder.
The output is built in ``DATA/.staging-<pid>`` and moved in at the end, so a failed run
leaves DATA untouched. DATA must be empty, absent or an earlier prepare_data output;
anything else needs ``--overwrite`` (then only prepare_data's own entries are replaced).

Classes come from the data: every labelme label is a class (``__ignore__`` shapes are
difficult boxes), ``--label-map`` renames or merges labels, and every red box is the class
``--red-label``. Class order (= class id in the records): sorted by code point, or the order
of ``--classes``, which then also refuses any other label. ``DATA/classes.txt`` records it.
"""
import argparse
import csv
import io
import logging
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from datasets.prepared import classes as class_names
from datasets.prepared import labelme, preprocess, raw_sources, redbox, splits, staging, voc
from datasets.prepared.errors import BadFileError
from datasets.prepared.images import JPEG_QUALITY, write_jpeg
from im2rec_tools import lst, records
from infra import runs
from infra.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger("prepare_data")

SCRIPT = "prepare_data"
MANIFEST_COLUMNS = ["id", "source", "group", "side", "x_offset", "y_offset", "width", "height",
                    "n_boxes", "ref_x_offset", "ref_y_offset", "ref_width", "ref_height",
                    "annotation", "rec_idx"]
LOG_COLUMNS = ["source", "sample", "kind", "code", "box", "reason"]
OUTPUTS = ("JPEGImages", "Reference", "Annotations", "records", "manifest.csv", "splits.json",
           "prepare_log.csv", "summary.json", "args.json", "env.json", "log.txt",
           class_names.CLASSES_FILE)
# Note kinds that are data problems (--strict stops on them); warning/ignored/noise/ink are not.
STRICT_NOTES = ("skipped",)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", required=True, help="folder of raw screenshots / labelme JSON")
    p.add_argument("--out", required=True, help="output folder DATA")
    p.add_argument("--folds", type=int, default=5, help="CV folds (0 = none; default %(default)s)")
    p.add_argument("--test-frac", type=float, default=0.2,
                   help="fraction of groups held out for testing (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default %(default)s)")
    p.add_argument("--groups", help="CSV mapping raw file names to a group (patient) column")
    p.add_argument("--group-column", help="group column of --groups (default: 'patient' or "
                                          "the only non-file column)")
    p.add_argument("--no-crop", action="store_true", help="keep the black border")
    p.add_argument("--no-split", action="store_true", help="single-panel images: no halves")
    p.add_argument("--strict", action="store_true",
                   help="stop with an error at the first bad file or dropped box")
    p.add_argument("--classes", default=None,
                   help="class names in class-id order, 'a,b,c' or a file with one per line "
                        "(labelme's labels.txt is read as is); labels outside it are refused "
                        "(default: every label found, sorted by code point)")
    p.add_argument("--label-map", default=None,
                   help="rename or merge labelme labels: 'label[,label...]=class' mappings "
                        "separated by ';', e.g. 'strain,cyst=lesion;artefact=__ignore__', or a "
                        "JSON file {label: class}; unmapped labels keep their name")
    p.add_argument("--red-label", default="lesion",
                   help="class of every red box burnt into a screenshot (default %(default)s)")
    p.add_argument("--ignore", choices=labelme.IGNORE_POLICIES, default="difficult",
                   help="what labelme __ignore__ shapes become (default %(default)s)")
    p.add_argument("--border-threshold", type=int, default=preprocess.BORDER_THRESHOLD,
                   help="grey level above which a pixel is panel (default %(default)s)")
    p.add_argument("--cr-threshold", type=int, default=redbox.CR_THRESHOLD,
                   help="Cr level above which a pixel is red ink (default %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out that is not a prepare_data output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _check_out(args, raw):
    out = Path(args.out)
    state = staging.classify(out, SCRIPT)
    if state == "foreign" and not args.overwrite:
        raise ValueError(f"--out {out} is not empty and not a prepare_data output (holds "
                         f"{staging.foreign_entries(out)}); choose an empty folder or add "
                         f"--overwrite (replaces only prepare_data's own entries)")
    if out.resolve() == raw.resolve():
        raise ValueError(f"--out {out} is the --raw folder; choose another folder")
    return state


def _fmt_box(box):
    return " ".join(f"{v:.2f}".rstrip("0").rstrip(".") for v in box)


def process_source(src, args, label_map, out_dir, taken):
    """Load, clean, crop, split and write one source. Returns (rows, events, info)."""
    data = raw_sources.load(src, label_map, args.ignore, args.cr_threshold, args.red_label)
    img = data["image"]
    h, w = img.shape[:2]
    events = [{"kind": k, "code": k, "box": "", "reason": m, "side": ""} for k, m in data["notes"]]
    if args.no_crop:
        crop, crop_info = (0, 0, w, h), {"method": "none", "reason": None}
    else:
        crop, crop_info = preprocess.find_crop(img, threshold=args.border_threshold)
        if crop_info["reason"]:
            events.append({"kind": "crop_fallback", "code": "crop_fallback", "box": "",
                           "side": "", "reason": crop_info["reason"]})
    halves = preprocess.panel_rects(crop, split=not args.no_split)
    per_half, box_events = preprocess.assign_boxes(data["objects"], (w, h), crop, halves)
    events += box_events
    base = raw_sources.slug(Path(src.rel).stem)
    if base in taken:  # same stem in another folder or with another extension
        base = raw_sources.slug(src.rel.replace("/", "_"))
    n = 2
    while base in taken:
        base, n = f"{raw_sources.slug(Path(src.rel).stem)}-{n}", n + 1
    rows = []
    sides = [s for s, objs in per_half.items() if any(not o["difficult"] for o in objs)]
    if sides:
        taken.add(base)
    for side in sides:
        sid = base if side == "full" else f"{base}_{side}"
        x0, y0, x1, y1 = halves[side]
        # out_dir is the staging folder: moving it in at the end is the atomic step.
        write_jpeg(out_dir / "JPEGImages" / f"{sid}.jpg", img[y0:y1, x0:x1], JPEG_QUALITY,
                   atomic=False)
        ref = {"L": "R", "R": "L"}.get(side)
        rx0 = ry0 = rw = rh = ""
        if ref:
            rx0, ry0, rx1, ry1 = halves[ref]
            rw, rh = rx1 - rx0, ry1 - ry0
            write_jpeg(out_dir / "Reference" / f"{sid}.jpg", img[ry0:ry1, rx0:rx1],
                       JPEG_QUALITY, atomic=False)
        # VOC files are written once the class list is known (see build).
        objs = [{"name": o["name"], "box": o["box"], "difficult": o["difficult"],
                 "truncated": 0} for o in per_half[side]]
        rows.append({"id": sid, "source": src.rel, "side": side, "x_offset": x0, "y_offset": y0,
                     "width": x1 - x0, "height": y1 - y0, "n_boxes": len(objs),
                     "ref_x_offset": rx0, "ref_y_offset": ry0, "ref_width": rw,
                     "ref_height": rh, "annotation": src.kind, "objects": objs})
    for e in events:
        e["sample"] = f"{base}_{e['side']}" if e.get("side") in ("L", "R") else ""
    info = {"crop": crop_info["method"], "n_objects": len(data["objects"]),
            "sides": sides, "ink_pixels": data["ink_pixels"]}
    return rows, events, info


def _groups(rows, by_rel, args):
    """Group label per row: the source, or the --groups CSV column."""
    if not args.groups:
        return {r["id"]: r["source"] for r in rows}, "source", 0
    table, column = splits.read_groups_csv(args.groups, args.group_column)
    out, missing = {}, set()
    for r in rows:
        names = raw_sources.source_names(by_rel[r["source"]])
        group = next((table[n] for n in names if n in table), None)
        if group is None:
            if args.strict:
                raise BadFileError(f"--groups {args.groups}: no row for {r['source']}")
            missing.add(r["source"])
            group = f"source:{r['source']}"
        out[r["id"]] = group
    for m in sorted(missing):
        log.warning("--groups has no row for %s; it forms its own group", m)
    return out, column, len(missing)


def _write_csv(path, columns, rows):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def build(args, raw, out_dir):
    """The whole chain into ``out_dir`` (the staging folder). Returns the summary."""
    t0 = time.perf_counter()
    given = class_names.parse_classes(args.classes)
    label_map = labelme.parse_label_map(args.label_map, given)
    sources, ignored = raw_sources.discover(raw, exclude=[Path(args.out)])
    if given is not None and args.red_label not in given and any(s.kind == "red" for s in sources):
        raise ValueError(f"--red-label {args.red_label!r} is not in --classes {given}; red "
                         f"boxes need a class: add it to --classes or set --red-label")
    by_rel = {s.rel: s for s in sources}
    log.info("%d sources in %s (%d red-box, %d labelme); %d other files ignored", len(sources),
             raw, sum(s.kind == "red" for s in sources), sum(s.kind == "labelme" for s in sources),
             len(ignored))
    rows, log_rows, skipped, taken = [], [], [], set()
    stats = Counter()
    with logging_redirect_tqdm():
        for src in tqdm(sources, desc="prepare", unit="img", disable=args.no_progress):
            try:
                new_rows, events, info = process_source(src, args, label_map, out_dir, taken)
            except BadFileError as e:
                if args.strict:
                    raise
                log.warning("skipped %s: %s", src.rel, e)
                skipped.append({"file": src.rel, "reason": str(e)})
                log_rows.append({"source": src.rel, "kind": "skipped_file", "reason": str(e)})
                continue
            for e in events:
                if args.strict and (e["kind"] == "dropped" or e["kind"] in STRICT_NOTES):
                    raise BadFileError(f"{src.rel}: {e['reason']} (box {e['box']})")
                if e["kind"] in ("dropped", "clipped", "skipped", "warning"):
                    log.warning("%s: %s %s%s", src.rel, e["kind"], e["reason"],
                                f" (box {_fmt_box(e['box'])})" if e["box"] else "")
                stats[f"{e['kind']}:{e['code']}"] += 1
                log_rows.append({"source": src.rel, "sample": e["sample"], "kind": e["kind"],
                                 "code": e["code"], "reason": e["reason"],
                                 "box": _fmt_box(e["box"]) if e["box"] else ""})
            stats["converted"] += 1
            stats["no_boxes"] += not new_rows
            stats["both_sides"] += len(new_rows) == 2
            stats["crop_fallback"] += info["crop"] == "full"
            rows += new_rows
    if not rows:
        raise BadFileError(f"--raw {raw}: no detection samples ({len(sources)} sources, "
                           f"{len(skipped)} skipped, {stats['no_boxes']} without boxes)")
    classes = class_names.resolve_classes(rows, given)
    log.info("classes (id order): %s", classes)
    for r in rows:
        voc.write_voc(out_dir / "Annotations" / f"{r['id']}.xml", f"{r['id']}.jpg", r["width"],
                      r["height"], r["objects"])
    class_names.write_classes(out_dir, classes)
    group_of, group_by, missing = _groups(rows, by_rel, args)
    sp = splits.make_splits([r["id"] for r in rows], [group_of[r["id"]] for r in rows],
                            k=args.folds, test_frac=args.test_frac, seed=args.seed,
                            group_by=group_by)
    splits.check_splits(sp, group_of)
    atomic_write_json(out_dir / "splits.json", sp)
    lines = []
    for idx, r in enumerate(rows):
        r["group"], r["rec_idx"] = group_of[r["id"]], idx
        lines.append(lst.lst_line(idx, r["width"], r["height"], r["objects"],
                                  f"JPEGImages/{r['id']}.jpg", classes))
    lst_path = out_dir / (records.RECORD_PREFIX + ".lst")
    lst.write_lst(lst_path, lines)
    n_rec = records.pack_records(lst_path, out_dir)
    _write_csv(out_dir / "manifest.csv", MANIFEST_COLUMNS, rows)
    _write_csv(out_dir / "prepare_log.csv", LOG_COLUMNS, log_rows)
    seconds = time.perf_counter() - t0
    dropped = {k.split(":", 1)[1]: v for k, v in stats.items() if k.startswith("dropped:")}
    return {
        "raw": str(raw), "out": str(args.out), "sources": len(sources),
        "converted": stats["converted"], "skipped_files": len(skipped), "skipped": skipped,
        "no_boxes": stats["no_boxes"], "samples": len(rows), "both_sides": stats["both_sides"],
        "boxes": sum(r["n_boxes"] for r in rows), "classes": classes,
        "boxes_per_class": {c: sum(o["name"] == c and not o["difficult"] for r in rows
                                   for o in r["objects"]) for c in classes},
        "difficult": sum(o["difficult"] for r in rows for o in r["objects"]),
        "clipped": stats["clipped:clipped"], "dropped": sum(dropped.values()),
        "dropped_by_reason": dropped,
        "shapes_skipped": stats["skipped:skipped"], "warnings": stats["warning:warning"],
        "crop_fallbacks": stats["crop_fallback"], "ignored_files": len(ignored),
        "groups_missing": missing, "group_by": group_by,
        "test": len(sp["test"]), "train": len(sp["train"]), "folds": len(sp["folds"]),
        "records": n_rec, "seconds": round(seconds, 3),
        "screenshots_per_s": round(len(sources) / max(seconds, 1e-9), 2),
    }


def main(args):
    raw = Path(args.raw)
    if not raw.is_dir():
        raise ValueError(f"--raw {raw}: not a folder")
    state = _check_out(args, raw)
    out = Path(args.out)
    created = not out.exists()
    stage = staging.start(out)
    try:
        # The staging folder is the run folder (args.json, env.json, log.txt); it moves in
        # with the data. The run detaches its log.txt when the block ends, so the stages
        # demo.py runs next do not write into DATA/log.txt.
        with runs.start(SCRIPT, args, directory=stage) as run:
            if state == "previous":
                log.info("%s holds an earlier prepare_data output; it is replaced at the end",
                         out)
            summary = build(args, raw, stage)
            for k in ("sources", "converted", "skipped_files", "no_boxes", "samples",
                      "both_sides", "boxes", "classes", "boxes_per_class", "clipped", "dropped",
                      "dropped_by_reason", "crop_fallbacks", "test", "train", "folds",
                      "screenshots_per_s"):
                log.info("summary %s: %s", k, summary[k])
            for s in summary["skipped"]:
                log.info("skipped %s: %s", s["file"], s["reason"])
            run.write_json("summary.json", summary)
            staging.install(stage, out, replace=OUTPUTS)
            log.info("wrote %s", out)  # into log.txt, which moved in with the rest
    except BaseException:
        staging.abandon(stage)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    return summary


if __name__ == "__main__":
    try:
        main(parse_args())
    except (BadFileError, ValueError) as err:
        raise SystemExit(f"prepare_data: error: {err}")
