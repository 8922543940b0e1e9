"""A raw clinic folder as a list of annotated screenshots, and loading one of them clean.

A raw folder holds screenshots with red boxes burnt in, and/or labelme JSON files each
pointing at a clean image (docs/CONTRACTS.md, "Raw phantom set"). An image that some JSON
claims is a labelme source; every other image is a red-box source. A broken JSON still
claims the image with its stem, so that image is skipped with it rather than read as a
red-box screenshot without boxes. ``truth.json`` (the phantom's answer key) is not an
annotation.

Loading returns the image with any red ink painted out (:mod:`datasets.prepared.redbox`) and its
objects in source pixels, unclipped: clipping and dropping happen in
:mod:`datasets.prepared.preprocess`, where each is reported.
"""
import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from datasets.prepared import labelme, redbox
from datasets.prepared.errors import BadFileError
from datasets.prepared.images import IMAGE_EXTS, check_content, read_image

log = logging.getLogger(__name__)

NOT_ANNOTATIONS = ("truth.json",)


@dataclass
class Source:
    """One raw screenshot and how it is annotated."""
    kind: str                      # "red" or "labelme"
    path: Path                     # the image file, or the JSON for labelme
    rel: str                       # path relative to the raw folder (posix), for reports
    image: Path = None             # labelme: the claimed image file, if any
    error: str = None              # discovery already found it unusable
    names: list = field(default_factory=list)  # file names a --groups CSV may use


def discover(raw_dir, exclude=()):
    """List the sources of a raw folder (recursively, hidden entries skipped).

    Parameters
    ----------
    raw_dir : str or Path
    exclude : sequence of Path
        Folders not to enter (for example the output folder when it lies inside).

    Returns
    -------
    sources : list of Source
        Sorted by relative path.
    ignored : list of str
        Relative paths of files that are neither images nor labelme JSON.
    """
    raw = Path(raw_dir)
    excluded = [Path(e).resolve() for e in exclude]
    files = []
    for p in sorted(raw.rglob("*")):
        rel_parts = p.relative_to(raw).parts
        if any(part.startswith(".") for part in rel_parts):
            continue
        if any(p.resolve() == e or e in p.resolve().parents for e in excluded):
            continue
        if p.is_file():
            files.append(p)
    rel = {p: p.relative_to(raw).as_posix() for p in files}
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
    claimed, sources, ignored = set(), [], []
    for p in files:
        if p.suffix.lower() != ".json":
            continue
        if p.name in NOT_ANNOTATIONS:
            ignored.append(rel[p])
            continue
        src = Source("labelme", p, rel[p], names=[p.name])
        try:
            data = labelme.load_json(p)
            src.image = labelme.find_image(p, data)
        except BadFileError as e:
            src.error = str(e)
        if src.image is not None:
            claimed.add(src.image.resolve())
            src.names.append(src.image.name)
        else:
            # A broken JSON (or one with embedded data) still owns the image of its stem.
            for q in images:
                if q.parent == p.parent and q.stem == p.stem:
                    claimed.add(q.resolve())
        sources.append(src)
    for p in images:
        if p.resolve() not in claimed:
            sources.append(Source("red", p, rel[p], names=[p.name]))
    for p in files:
        if p.suffix.lower() not in IMAGE_EXTS + (".json",):
            ignored.append(rel[p])
    sources.sort(key=lambda s: s.rel)
    return sources, sorted(ignored)


def slug(name):
    """ASCII, space-free id from a file stem; a short hash is appended if it had to change.

    >>> slug("scan_0001")
    'scan_0001'
    """
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_).strip("_") or "img"
    if s != name:
        s = f"{s}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:6]}"
    return s


def load(source, label_map=None, ignore="difficult", cr_threshold=redbox.CR_THRESHOLD,
         red_label="lesion"):
    """Read one source: the clean image and its objects.

    Parameters
    ----------
    source : Source
    label_map : dict or None
        labelme label map (:func:`datasets.prepared.labelme.parse_label_map`).
    ignore : {"difficult", "skip"}
        What labelme ``__ignore__`` shapes become.
    cr_threshold : int
        Cr threshold for red ink.
    red_label : str
        The class of every red box (ink carries no label).

    Returns
    -------
    dict
        ``{"image": (H, W, 3) uint8 BGR without red ink, "objects": [{"name", "box",
        "difficult"}] in source pixels, "notes": [(kind, message)], "ink_pixels": int}``.
        ``name`` is a class name, or ``__ignore__`` for a difficult labelme ignore shape.
        Note kinds: ``warning`` (kept, approximate), ``skipped`` (an annotation not used),
        ``ignored`` (left out on purpose), ``merged`` (labelme shapes of one group),
        ``noise`` (red specks too small to be boxes), ``ink`` (red ink on a labelme image).

    Raises
    ------
    BadFileError
        Unreadable, truncated, empty, all-black image, broken JSON, missing image.
    """
    if source.error:
        raise BadFileError(source.error)
    notes = []
    if source.kind == "labelme":
        ann = labelme.read_labelme(source.path, label_map=label_map, ignore=ignore)
        img = labelme.load_image(ann)
        where = str(ann["image_path"] or source.path)
        objects = [{"name": o["name"], "box": o["box"], "difficult": o["difficult"]}
                   for o in ann["objects"]]
        notes += ann["notes"]
    else:
        img = read_image(source.path)
        where = str(source.path)
    check_content(img, where)
    if source.kind == "red":
        boxes, red_notes = redbox.extract_red_boxes(img, threshold=cr_threshold)
        objects = [{"name": red_label, "box": b, "difficult": 0} for b in boxes]
        # Specks below the size limit are JPEG noise or stray marks, not lost annotations.
        notes += [("noise" if "dropped" in n or "no box" in n else "warning", n)
                  for n in red_notes]
    clean, ink = redbox.remove_ink(img)
    if ink and source.kind == "labelme":
        notes.append(("ink", f"{where}: {ink} px of red ink on a labelme image painted out"))
    return {"image": clean, "objects": objects, "notes": notes, "ink_pixels": ink}


def source_names(source):
    """Names under which a --groups CSV may list this source (file names and stems)."""
    out = []
    for n in source.names:
        out += [n, Path(n).stem]
    return out

