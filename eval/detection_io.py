"""Read and write detection data: Cartucho/mAP folders, VOC XML ground truth, detections JSON.

Every reader returns the plain dicts that :mod:`eval.detection` scores:

- ground truth: ``{image_id: {"boxes": (N, 4) float64, "labels": (N,) int64,
  "difficult": (N,) bool}}``
- detections: ``{image_id: {"boxes": (N, 4) float64, "scores": (N,) float64,
  "labels": (N,) int64}}``

with labels indexing a ``classes`` list and boxes ``[x1, y1, x2, y2]`` in pixels (GluonCV
convention, docs/CONTRACTS.md). The Cartucho layout (github.com/Cartucho/mAP) is
``ground-truth/NAME.txt`` with lines ``class x1 y1 x2 y2 [difficult]`` (the literal word, as
that tool writes it) and ``detection-results/NAME.txt`` with ``class score x1 y1 x2 y2``; a
class name may contain spaces (fields are taken from the right). Standard library and numpy
only. COCO JSON (instances and results) is in :mod:`eval.coco_io`.

What is accepted, as the tools people already run accept it:

- Ground truth is strict: a malformed line, a non-finite coordinate or an inverted box
  (``x2 < x1`` or ``y2 < y1``) is a :class:`FormatError` naming the file and line.
- A detection of a class outside the class list (by default the ground truth's classes) is
  dropped and counted (``table.notes["ignored"]``, a log warning in the public readers):
  Cartucho/mAP only loops over ground-truth classes and pycocotools only over the
  ground truth's category ids.
- An inverted detection box is kept and scored as the peers score it (their IoU arithmetic
  gives it no overlap: a false positive) and counted; see :mod:`eval.detection`.
- A non-finite detection coordinate or score stays an error: it is a broken output, not a
  convention, and the peers disagree on it (Cartucho's comparisons make it a false
  positive, GluonCV's NaN IoU can count it as a match).
"""
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from infra.atomic import make_temp_dir


log = logging.getLogger(__name__)

GT_FORMAT = "class x1 y1 x2 y2 [difficult]"
DR_FORMAT = "class score x1 y1 x2 y2"


class FormatError(ValueError):
    """An input file that is not in the expected format; the message names file and line."""


# --------------------------------------------------------------------------- flat tables
class _Table:
    """Boxes of many images in one array, rows grouped by image (internal fast path).

    ``ids[i]`` is the image id of group ``i``; rows ``starts[i]:starts[i + 1]`` belong to it.
    ``extra`` is the scores (detections) or the difficult flags (ground truth). ``notes`` says
    what reading left out or let through: ``ignored`` ({class name: detections dropped}),
    ``first_inverted`` (where the first inverted detection box is, or None).
    """

    __slots__ = ("ids", "counts", "boxes", "labels", "extra", "notes")

    def __init__(self, ids, counts, boxes, labels, extra, notes=None):
        self.ids = list(ids)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.extra = np.asarray(extra)
        self.notes = {"ignored": {}, "first_inverted": None, **(notes or {})}

    def select(self, keep):
        """The rows where ``keep`` is true, grouped as before (notes are kept)."""
        img = self.image_index[keep]
        counts = np.bincount(img, minlength=len(self.ids))
        return _Table(self.ids, counts, self.boxes[keep], self.labels[keep], self.extra[keep],
                      self.notes)

    @property
    def image_index(self):
        return np.repeat(np.arange(len(self.ids), dtype=np.int64), self.counts)

    def to_dict(self, extra_key, extra_dtype):
        cuts = np.cumsum(self.counts)[:-1]
        boxes = np.split(self.boxes, cuts)
        labels = np.split(self.labels, cuts)
        extra = np.split(self.extra.astype(extra_dtype, copy=False), cuts)
        return {i: {"boxes": b, "labels": lab, extra_key: e}
                for i, b, lab, e in zip(self.ids, boxes, labels, extra)}


def inverted_boxes(boxes):
    """Mask of the rows of ``boxes`` (N, 4) with ``x2 < x1`` or ``y2 < y1``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])


def _check_boxes(boxes, where, inverted_ok=False):
    """Raise on non-finite coordinates, and on x2 < x1 / y2 < y1 unless ``inverted_ok``;
    ``where(row)`` names the row. Returns the mask of inverted rows."""
    bad = ~np.isfinite(boxes).all(axis=1)
    if bad.any():
        r = int(np.argmax(bad))
        raise FormatError(f"{where(r)}: coordinates must be finite numbers, got {boxes[r].tolist()}")
    bad = inverted_boxes(boxes)
    if bad.any() and not inverted_ok:
        r = int(np.argmax(bad))
        raise FormatError(f"{where(r)}: want x1 <= x2 and y1 <= y2 ([x1, y1, x2, y2] order), "
                          f"got {boxes[r].tolist()}")
    return bad


def table_from_ground_truth(gt, n_classes=None):
    """Flatten a ground-truth dict (see module docstring) into a :class:`_Table`."""
    ids, counts, boxes, labels, diff = [], [], [], [], []
    for image_id, entry in gt.items():
        b, lab = _entry_arrays(entry, image_id, "ground truth", n_classes)
        d = entry.get("difficult")
        d = np.zeros(len(lab), bool) if d is None else np.asarray(d).reshape(-1).astype(bool)
        if len(d) != len(lab):
            raise ValueError(f"ground truth {image_id!r}: {len(lab)} labels but {len(d)} "
                             f"difficult flags")
        ids.append(image_id)
        counts.append(len(lab))
        boxes.append(b)
        labels.append(lab)
        diff.append(d)
    return _Table(ids, counts, _cat(boxes, (0, 4), np.float64), _cat(labels, (0,), np.int64),
                  _cat(diff, (0,), bool))


def table_from_detections(det, image_ids, n_classes=None, source="detections"):
    """Flatten a detections dict into a :class:`_Table` aligned with ``image_ids``.

    Images of ``image_ids`` missing from ``det`` have no detections; an id of ``det`` not in
    ``image_ids`` is an error (a detection for an image without ground truth). Inverted boxes
    are kept; ``notes["first_inverted"]`` names the first as ``"<source> <id> box <row>"``.
    """
    known = set(image_ids)
    extra_ids = [i for i in det if i not in known]
    if extra_ids:
        raise ValueError(f"detections for {len(extra_ids)} image(s) without ground truth, "
                         f"e.g. {extra_ids[:3]}; every detected image needs a ground-truth "
                         f"entry (possibly with no boxes)")
    counts, boxes, labels, scores = [], [], [], []
    first_inverted = None
    for image_id in image_ids:
        entry = det.get(image_id)
        if entry is None:
            counts.append(0)
            continue
        b, lab = _entry_arrays(entry, image_id, "detections", n_classes, inverted_ok=True)
        inv = inverted_boxes(b)
        if first_inverted is None and inv.any():
            first_inverted = f"{source} {image_id!r} box {int(np.argmax(inv))}"
        s = np.asarray(entry["scores"], dtype=np.float64).reshape(-1)
        if len(s) != len(lab):
            raise ValueError(f"detections {image_id!r}: {len(lab)} labels but {len(s)} scores")
        if not np.isfinite(s).all():
            raise ValueError(f"detections {image_id!r}: scores must be finite, got {s.tolist()}")
        counts.append(len(lab))
        boxes.append(b)
        labels.append(lab)
        scores.append(s)
    return _Table(image_ids, counts, _cat(boxes, (0, 4), np.float64),
                  _cat(labels, (0,), np.int64), _cat(scores, (0,), np.float64),
                  {"first_inverted": first_inverted})


def tables_from_dicts(gt, det, classes=None):
    """Ground truth and detections dicts as aligned tables, and the class names.

    Returns (gt_table, dr_table, classes); ``classes`` defaults to ``"0", "1", ...`` up to the
    largest label."""
    n_cls = None if classes is None else len(classes)
    gt_t = table_from_ground_truth(gt, n_cls)
    dr_t = table_from_detections(det, list(gt), n_cls)
    if classes is None:
        n = int(max(gt_t.labels.max(initial=-1), dr_t.labels.max(initial=-1))) + 1
        classes = [str(i) for i in range(n)]
    return gt_t, dr_t, list(classes)


def _cat(parts, empty_shape, dtype):
    return np.concatenate(parts) if parts else np.zeros(empty_shape, dtype)


def _entry_arrays(entry, image_id, what, n_classes, inverted_ok=False):
    try:
        b = np.asarray(entry["boxes"], dtype=np.float64)
        lab_raw = np.asarray(entry["labels"]).reshape(-1)
    except KeyError as e:
        raise ValueError(f"{what} {image_id!r}: missing key {e}; want 'boxes' and 'labels'") \
            from None
    b = b.reshape(-1, 4) if b.size else np.zeros((0, 4))
    if len(b) != len(lab_raw):
        raise ValueError(f"{what} {image_id!r}: {len(b)} boxes but {len(lab_raw)} labels")
    lab = lab_raw.astype(np.int64)
    if len(lab) and (not np.array_equal(lab, lab_raw) or lab.min() < 0
                     or (n_classes is not None and lab.max() >= n_classes)):
        raise ValueError(f"{what} {image_id!r}: labels must be integers in [0, {n_classes}), "
                         f"got {lab_raw.tolist()}")
    _check_boxes(b, lambda r: f"{what} {image_id!r} box {r}", inverted_ok)
    return b, lab


# --------------------------------------------------------------------------- Cartucho text
def _list_txt(folder):
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder (want a Cartucho "
                                f"'ground-truth/' or 'detection-results/' folder of NAME.txt)")
    with os.scandir(folder) as it:
        names = sorted(e.name[:-4] for e in it if e.name.endswith(".txt") and e.is_file())
    return names


def _read_text(path):
    # os.open/os.read skips the buffered-reader objects of open(); thousands of small files.
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, 1 << 16)]
        # a short read of a regular file means end of file: saves a syscall per small file
        while len(chunks[-1]) == 1 << 16:
            chunks.append(os.read(fd, 1 << 16))
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not UTF-8 text ({e})") from None


class _Classes:
    """Class name -> index; grows while reading ground truth unless the list was given.

    With ``ignore_unknown`` (detections) an unknown name gives index -1 and is counted in
    ``ignored`` instead of raising."""

    def __init__(self, classes, ignore_unknown=False):
        self.fixed = classes is not None
        self.names = list(classes) if classes is not None else []
        self.index = {n: i for i, n in enumerate(self.names)}
        if len(self.index) != len(self.names):
            raise ValueError(f"class names must be unique, got {self.names}")
        self.ignore_unknown = ignore_unknown
        self.ignored = {}

    def get(self, name, path, lineno):
        i = self.index.get(name)
        if i is None:
            if self.ignore_unknown:
                self.ignored[name] = self.ignored.get(name, 0) + 1
                return -1
            if self.fixed:
                raise FormatError(f"{path}:{lineno}: unknown class {name!r}; known classes: "
                                  f"{self.names} (declare extra classes with --classes)")
            i = self.index[name] = len(self.names)
            self.names.append(name)
        return i


def _parse_lines(text, path, n_num, fmt, classes, gt):
    """Parse one Cartucho file: returns (labels, numbers, difficult) lists.

    ``n_num`` numbers close each line (4 for ground truth, 5 for detections); the class name is
    what precedes them. Ground truth may end with the word ``difficult``.
    """
    labels, nums, diff = [], [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        p = line.split()
        if not p:
            continue
        d = gt and p[-1] == "difficult"
        if d:
            p.pop()
        if len(p) < n_num + 1:
            raise FormatError(f"{path}:{lineno}: want '{fmt}', got {len(p) + d} field(s): "
                              f"{line.strip()!r}")
        if gt and not d and len(p) == n_num + 2 and p[-1] in ("0", "1"):
            # 'class x1 y1 x2 y2 1' would silently read as class 'class x1'
            raise FormatError(f"{path}:{lineno}: {len(p)} fields ending in {p[-1]!r}; write a "
                              f"difficult box as '{GT_FORMAT}' with the word 'difficult' "
                              f"(and nothing for a normal box)")
        name = p[0] if len(p) == n_num + 1 else " ".join(p[:-n_num])
        vals = p[-n_num:]
        try:
            nums.extend(map(float, vals))
        except ValueError:
            raise FormatError(f"{path}:{lineno}: want '{fmt}' with numbers after the class, got "
                              f"{line.strip()!r}" + (" (a difficult flag is the word "
                                                     "'difficult')" if gt else "")) from None
        labels.append(classes.get(name, path, lineno))
        diff.append(d)
    return labels, nums, diff


def _line_of_row(text, k):
    """Line number of the k-th non-blank line of ``text`` (for error messages)."""
    seen = -1
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            seen += 1
            if seen == k:
                return lineno
    return "?"


def _parse_each(texts, paths, n_num, gt, classes):
    """File by file, line by line (blank lines, spaces in class names, precise errors).
    Returns (counts, labels, numbers, difficult)."""
    fmt = GT_FORMAT if gt else DR_FORMAT
    counts, labels, nums, extra = [], [], [], []
    for text, path in zip(texts, paths):
        lab, num, d = _parse_lines(text, path, n_num, fmt, classes, gt)
        counts.append(len(lab))
        labels.extend(lab)
        nums.extend(num)
        if gt:
            extra.extend(d)
    return counts, labels, nums, extra


def _read_folder(folder, names, gt, classes):
    """Read ``folder/NAME.txt`` for ``names`` (None = no file: empty) into a :class:`_Table`."""
    n_num = 4 if gt else 5
    folder = str(folder)
    paths = [None if n is None else os.path.join(folder, n + ".txt") for n in names]
    texts = ["" if p is None else _read_text(p) for p in paths]
    # One Python loop over lines was as fast here as C-level bulk splitting of all files
    # (bench/bench_map.py: the parse costs about what reading the files costs).
    counts, labels, nums, extra = _parse_each(texts, paths, n_num, gt, classes)
    arr = np.array(nums, dtype=np.float64).reshape(-1, n_num)
    boxes = arr[:, -4:]
    extra = np.array(extra, dtype=bool) if gt else arr[:, 0].copy()
    table = _Table([n for n in names], counts, boxes, labels, extra)

    def where(row):
        img = int(np.searchsorted(np.cumsum(table.counts), row, side="right"))
        path = os.path.join(folder, names[img] + ".txt")
        k = row - int(np.sum(table.counts[:img]))
        return f"{path}:{_line_of_row(_read_text(path), k)}"

    if gt:
        _check_boxes(boxes, where)
        return table
    if not np.isfinite(table.extra).all():
        r = int(np.argmax(~np.isfinite(table.extra)))
        raise FormatError(f"{where(r)}: score must be a finite number, got {table.extra[r]}")
    keep = table.labels >= 0  # -1: a class outside the list, dropped (counted by classes)
    inv = _check_boxes(boxes, where, inverted_ok=True) & keep
    table.notes["first_inverted"] = where(int(np.argmax(inv))) if inv.any() else None
    table.notes["ignored"] = dict(classes.ignored)
    return table if keep.all() else table.select(keep)


def _read_cartucho_tables(gt_dir, dr_dir=None, classes=None):
    """Both folders as tables aligned on the ground-truth image ids (CLI fast path)."""
    cls = _Classes(classes)
    gt_names = _list_txt(gt_dir)
    gt_table = _read_folder(gt_dir, gt_names, True, cls)
    if classes is None:
        # Indices in sorted-name order, so the same folder always gives the same numbering.
        order = sorted(range(len(cls.names)), key=lambda i: cls.names[i])
        remap = np.empty(len(order), np.int64)
        remap[order] = np.arange(len(order))
        gt_table.labels = remap[gt_table.labels] if len(order) else gt_table.labels
        cls = _Classes(sorted(cls.names))
    if dr_dir is None:
        return gt_table, None, cls.names
    return gt_table, _read_dr_table(dr_dir, gt_names, cls, gt_dir), cls.names


def _read_dr_table(dr_dir, image_ids, cls, gt_where="the ground truth"):
    dr_names = _list_txt(dr_dir)
    known = set(image_ids)
    orphans = [n for n in dr_names if n not in known]
    if orphans:
        raise FormatError(f"{dr_dir}: {len(orphans)} detection file(s) without ground truth "
                          f"in {gt_where}, e.g. {orphans[0]}.txt; an image with no objects "
                          f"still needs an (empty) ground-truth entry")
    have = set(dr_names)
    table = _read_folder(dr_dir, [n if n in have else None for n in image_ids], False,
                         _Classes(cls.names, ignore_unknown=True))
    table.ids = list(image_ids)
    return table


def ignored_message(ignored):
    """One line for the detections dropped because their class has no ground truth.

    Parameters
    ----------
    ignored : dict
        ``{class name (or "category_id N"): number of detections dropped}``.

    Returns
    -------
    str or None
        ``"ignored 12 detections of 1 class(es) without ground truth: refrigerator"``; None
        when nothing was dropped.
    """
    if not ignored:
        return None
    n = sum(ignored.values())
    names = ", ".join(str(k) for k in sorted(ignored, key=str))
    return (f"ignored {n} detection{'s' if n != 1 else ''} of {len(ignored)} class(es) "
            f"without ground truth: {names}")


def _log_ignored(table, source):
    msg = ignored_message(table.notes["ignored"])
    if msg:
        log.warning("%s: %s", source, msg)


def read_cartucho_detections(dr_dir, image_ids, classes):
    """Read a Cartucho ``detection-results/`` folder for known images and classes.

    Parameters
    ----------
    dr_dir : str or Path
    image_ids : list of str
        Images with ground truth; one without a file has no detections, a file of another
        name is an error.
    classes : list of str
        Class names; a line of another class is dropped, counted and logged as a warning
        (Cartucho/mAP ignores detections of classes without ground truth).

    Returns
    -------
    dict
        ``{id: {"boxes", "scores", "labels"}}`` for every id of ``image_ids``. Inverted boxes
        are kept (see the module docstring).
    """
    table = _read_dr_table(dr_dir, list(image_ids), _Classes(classes))
    _log_ignored(table, dr_dir)
    return table.to_dict("scores", np.float64)


def read_cartucho(gt_dir, dr_dir=None, classes=None):
    """Read a Cartucho/mAP ground-truth folder and, optionally, its detection folder.

    Parameters
    ----------
    gt_dir : str or Path
        ``ground-truth/`` folder of ``NAME.txt`` files, lines ``class x1 y1 x2 y2 [difficult]``.
        An empty file is an image with no objects.
    dr_dir : str or Path, optional
        ``detection-results/`` folder, lines ``class score x1 y1 x2 y2``. A ground-truth file
        without a detection file is an image with no detections; a detection file without a
        ground-truth file is an error.
    classes : list of str, optional
        Class names (index order). Default: the sorted names found in the ground truth. A
        ground-truth line of another class is an error; a detection of another class is
        dropped, counted and logged as a warning, as Cartucho/mAP ignores it.

    Returns
    -------
    gt : dict
        ``{NAME: {"boxes", "labels", "difficult"}}`` in sorted-name order.
    det : dict or None
        ``{NAME: {"boxes", "scores", "labels"}}`` for every ground-truth NAME.
    classes : list of str

    Raises
    ------
    FormatError
        A malformed line, an unknown ground-truth class, an inverted ground-truth box or an
        orphan detection file (message names the file and line).
    """
    gt_t, dr_t, names = _read_cartucho_tables(gt_dir, dr_dir, classes)
    if dr_t is not None:
        _log_ignored(dr_t, dr_dir)
    gt = gt_t.to_dict("difficult", bool)
    det = dr_t.to_dict("scores", np.float64) if dr_t is not None else None
    return gt, det, names


def _fmt(v):
    # repr of a Python float is the shortest text that reads back to the same number.
    return repr(float(v))


def _safe_name(image_id):
    s = str(image_id)
    if not s or "/" in s or "\\" in s or s in (".", "..") or "\n" in s:
        raise ValueError(f"image id {image_id!r} cannot be a file name")
    return s


def _write_folder(folder, files):
    """Write ``{name: text}`` as ``folder/name.txt``, all or nothing: the files go to a
    temporary sibling folder that is renamed into place (``folder`` must not hold files)."""
    folder = Path(folder)
    if folder.exists():
        if any(folder.iterdir()):
            raise FileExistsError(f"{folder} already holds files, which would be scored with the "
                                  f"new ones; write into a new folder")
        folder.rmdir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(make_temp_dir(folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        for name, text in files.items():
            with open(tmp / f"{name}.txt", "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def write_cartucho(out_dir, classes, gt=None, det=None):
    """Write ``out_dir/ground-truth/`` and/or ``out_dir/detection-results/`` (Cartucho layout).

    Parameters
    ----------
    out_dir : str or Path
        Parent folder. Each sub-folder is written whole into a temporary folder and renamed
        into place, so a crash leaves no half folder; an existing non-empty sub-folder is
        refused (its old files would be scored too).
    classes : list of str
        Names for the label indices. Names may contain spaces.
    gt, det : dict, optional
        Ground truth / detections as returned by the readers. With both, every ground-truth
        image also gets a (possibly empty) detection file. Numbers are written with Python's
        shortest round-trip ``repr``, so reading them back gives the same floats.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    classes = [str(c) for c in classes]
    if gt is not None:
        files = {}
        for image_id, e in gt.items():
            boxes = np.asarray(e["boxes"], dtype=np.float64).reshape(-1, 4)
            labels = np.asarray(e["labels"]).reshape(-1)
            diff = e.get("difficult")
            diff = np.zeros(len(labels), bool) if diff is None else np.asarray(diff).reshape(-1)
            files[_safe_name(image_id)] = "".join(
                " ".join([classes[int(c)], *map(_fmt, b)]) + (" difficult\n" if d else "\n")
                for c, b, d in zip(labels, boxes, diff))
        _write_folder(out_dir / "ground-truth", files)
    if det is not None:
        ids = list(gt) if gt is not None else list(det)
        if gt is not None:
            orphans = [i for i in det if i not in gt]
            if orphans:
                raise ValueError(f"detections for images without ground truth: {orphans[:3]}")
        files = {}
        for image_id in ids:
            e = det.get(image_id) or {"boxes": [], "scores": [], "labels": []}
            boxes = np.asarray(e["boxes"], dtype=np.float64).reshape(-1, 4)
            files[_safe_name(image_id)] = "".join(
                " ".join([classes[int(c)], _fmt(s), *map(_fmt, b)]) + "\n"
                for c, s, b in zip(np.asarray(e["labels"]).reshape(-1),
                                   np.asarray(e["scores"]).reshape(-1), boxes))
        _write_folder(out_dir / "detection-results", files)
    return out_dir


# --------------------------------------------------------------------------- VOC XML
try:  # entity-expansion-safe parser when available (it is in requirements.txt)
    from defusedxml import ElementTree as _ET
except ImportError:  # pragma: no cover - plain ElementTree is fine for trusted files
    from xml.etree import ElementTree as _ET


def read_voc_xml(path, one_based=True):
    """Objects of one VOC XML annotation.

    Parameters
    ----------
    path : str or Path
    one_based : bool
        VOC files store 1-based pixels; subtract 1 from all four coordinates, as GluonCV's
        ``VOCDetection`` does (and ``datasets/prepared/voc.py`` writes), to get GluonCV boxes.

    Returns
    -------
    list of (name, [x1, y1, x2, y2], difficult)
    """
    try:
        root = _ET.parse(str(path)).getroot()
    except Exception as e:  # ParseError, or defusedxml's refusals of entities/DTDs
        raise FormatError(f"{path}: unreadable VOC XML ({type(e).__name__}: {e})") from None
    shift = 1.0 if one_based else 0.0
    out = []
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if not name or bb is None:
            raise FormatError(f"{path}: <object> #{k + 1} needs <name> and <bndbox>")
        try:
            box = [float(bb.findtext(t)) - shift for t in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            raise FormatError(f"{path}: <object> #{k + 1} ({name}): <bndbox> needs numeric "
                              f"xmin, ymin, xmax, ymax") from None
        d = (obj.findtext("difficult") or "0").strip()
        try:
            diff = bool(int(float(d)))
        except ValueError:
            raise FormatError(f"{path}: <object> #{k + 1}: <difficult> should be 0 or 1, "
                              f"got {d!r}") from None
        out.append((name, box, diff))
    return out


def read_voc_dir(ann_dir, classes=None, ids=None, one_based=True):
    """Ground truth from a folder of VOC XML files (``Annotations/<id>.xml``).

    Parameters
    ----------
    ann_dir : str or Path
    classes : list of str, optional
        Class names; default the sorted names found. An object of another class is an error.
    ids : list of str, optional
        Read only these ids (in this order); default every ``*.xml``, sorted.
    one_based : bool
        See :func:`read_voc_xml`.

    Returns
    -------
    gt : dict
        ``{id: {"boxes", "labels", "difficult"}}``.
    classes : list of str
    """
    ann_dir = Path(ann_dir)
    if ids is None:
        if not ann_dir.is_dir():
            raise FileNotFoundError(f"{ann_dir}: not a folder of VOC .xml files")
        ids = sorted(p.stem for p in ann_dir.glob("*.xml"))
    objs = {i: read_voc_xml(ann_dir / f"{i}.xml", one_based) for i in ids}
    names = list(classes) if classes is not None else sorted(
        {o[0] for v in objs.values() for o in v})
    index = {n: k for k, n in enumerate(names)}
    gt = {}
    for i, v in objs.items():
        for name, _, _ in v:
            if name not in index:
                raise FormatError(f"{ann_dir / (i + '.xml')}: unknown class {name!r}; "
                                  f"known classes: {names}")
        boxes = np.array([o[1] for o in v], dtype=np.float64).reshape(-1, 4)
        _check_boxes(boxes, lambda r, i=i: f"{ann_dir / (i + '.xml')} object #{r + 1}")
        gt[i] = {"boxes": boxes,
                 "labels": np.array([index[o[0]] for o in v], dtype=np.int64),
                 "difficult": np.array([o[2] for o in v], dtype=bool)}
    return gt, names


# --------------------------------------------------------------------------- detections JSON
def write_detections_json(path, detections, classes, coords="half", **extra):
    """Write detections as the JSON of docs/CONTRACTS.md, atomically.

    ``{"classes": [...], "coords": coords, "images": {id: {"boxes": [[x1, y1, x2, y2], ...],
    "scores": [...], "labels": [...]}}}``; ``extra`` keys are added at the top level.

    Returns
    -------
    pathlib.Path
    """
    images = {}
    for image_id, e in detections.items():
        boxes = np.asarray(e["boxes"], dtype=np.float64).reshape(-1, 4)
        images[str(image_id)] = {"boxes": boxes.tolist(),
                                 "scores": np.asarray(e["scores"], np.float64).reshape(-1).tolist(),
                                 "labels": np.asarray(e["labels"]).reshape(-1).astype(int).tolist()}
    doc = {"classes": [str(c) for c in classes], "coords": coords, **extra, "images": images}
    from infra.atomic import atomic_write_json  # here: the CLI's start-up does not need it
    return atomic_write_json(path, doc)


def read_detections_json(path, return_meta=False):
    """Read detections JSON (docs/CONTRACTS.md).

    Parameters
    ----------
    path : str or Path
    return_meta : bool
        Also return the top-level keys other than ``images`` (``coords``, extras).

    Returns
    -------
    detections : dict
        ``{id: {"boxes": (N, 4) float64, "scores": (N,) float64, "labels": (N,) int64}}``.
    classes : list of str
    meta : dict, only with ``return_meta``

    Inverted boxes are kept (module docstring); non-finite numbers are a :class:`FormatError`.
    """
    doc = load_json(path)
    det, classes = detections_from_doc(doc, path)
    if return_meta:
        return det, classes, {k: v for k, v in doc.items() if k != "images"}
    return det, classes


def load_json(path):
    """``json.load`` of a UTF-8 file; a file that is not JSON is a :class:`FormatError`."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}: not JSON ({e})") from None


def is_detections_doc(doc):
    """True for a parsed detections JSON of docs/CONTRACTS.md (``classes`` + ``images``)."""
    return isinstance(doc, dict) and isinstance(doc.get("classes"), list) \
        and isinstance(doc.get("images"), dict)


def detections_from_doc(doc, path):
    """:func:`read_detections_json` on an already parsed document (``path`` for messages)."""
    if not is_detections_doc(doc):
        raise FormatError(f"{path}: want an object with 'classes' (list) and 'images' "
                          f"(object id -> boxes/scores/labels)")
    classes = [str(c) for c in doc["classes"]]
    det = {}
    for image_id, e in doc["images"].items():
        if not isinstance(e, dict) or not {"boxes", "scores", "labels"} <= set(e):
            raise FormatError(f"{path}: image {image_id!r}: want keys boxes, scores, labels")
        try:
            boxes = np.asarray(e["boxes"], dtype=np.float64).reshape(-1, 4)
            scores = np.asarray(e["scores"], dtype=np.float64).reshape(-1)
            labels_raw = np.asarray(e["labels"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise FormatError(f"{path}: image {image_id!r}: boxes must be [[x1, y1, x2, y2], "
                              f"...], scores and labels numbers ({err})") from None
        if not len(boxes) == len(scores) == len(labels_raw):
            raise FormatError(f"{path}: image {image_id!r}: {len(boxes)} boxes, {len(scores)} "
                              f"scores, {len(labels_raw)} labels (want equal counts)")
        labels = labels_raw.astype(np.int64)
        if len(labels) and (not np.array_equal(labels, labels_raw) or labels.min() < 0
                            or labels.max() >= len(classes)):
            raise FormatError(f"{path}: image {image_id!r}: labels must index classes "
                              f"{classes}, got {labels_raw.tolist()}")
        if not np.isfinite(scores).all():
            raise FormatError(f"{path}: image {image_id!r}: non-finite score")
        _check_boxes(boxes, lambda r, i=image_id: f"{path}: image {i!r} box {r}",
                     inverted_ok=True)
        det[image_id] = {"boxes": boxes, "scores": scores, "labels": labels}
    return det, classes
