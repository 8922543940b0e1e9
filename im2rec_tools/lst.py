"""GluonCV detection ``.lst`` files: one tab-separated line per image.

Line layout (docs/CONTRACTS.md; GluonCV tutorial "detection_custom", MXNET_TRAPS 2):
``idx \\t 4 \\t 6 \\t W \\t H \\t cls x1 y1 x2 y2 difficult ... \\t relpath`` with every field
tab-separated, box coordinates normalised to [0, 1] and the class first. ``A = 4`` is the
header width (A, B, W, H), ``B = 6`` the per-object width; the sixth object column is a real
0/1 difficult flag, which GluonCV's validation passes to the VOC metric (MXNET_TRAPS 8).
Lines are written with ``'\\t'.join`` and checked here, because ``im2rec.py`` silently drops
malformed lines (MXNET_TRAPS 4) and GluonCV cannot store an image without objects (7).
"""
import math
from pathlib import Path

from infra.atomic import atomic_write_text

HEADER_WIDTH = 4
OBJECT_WIDTH = 6


def _fmt(v):
    return f"{v:.6f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def lst_line(idx, width, height, objects, relpath, classes):
    """Format one detection ``.lst`` line.

    Parameters
    ----------
    idx : int
        Record index (stored as the record's ``header.id``).
    width, height : int
        Image size in pixels (the boxes are normalised by it).
    objects : list of dict
        ``{"name": class name, "box": [x1, y1, x2, y2] pixels, "difficult": 0|1}``; at least
        one; each box inside the image with positive area.
    relpath : str
        Image path relative to the record root, forward slashes, no tabs.
    classes : sequence of str
        Class names; the class id is the position in this list.

    Returns
    -------
    str
        The line without its newline.

    Raises
    ------
    ValueError
        No objects, unknown class, a box outside the image or without area, or a path with
        a tab or newline.
    """
    if not objects:
        raise ValueError(f"{relpath}: a detection record needs at least one object "
                         f"(GluonCV cannot store negatives)")
    if any(c in relpath for c in "\t\r\n"):
        raise ValueError(f"{relpath!r}: image path must not contain tabs or newlines")
    fields = [str(int(idx)), str(HEADER_WIDTH), str(OBJECT_WIDTH), str(int(width)),
              str(int(height))]
    for obj in objects:
        if obj["name"] not in classes:
            raise ValueError(f"{relpath}: class {obj['name']!r} not in {list(classes)}")
        x1, y1, x2, y2 = (float(c) for c in obj["box"])
        if not all(math.isfinite(c) for c in (x1, y1, x2, y2)):
            raise ValueError(f"{relpath}: box {obj['box']} is not finite")
        if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
            raise ValueError(f"{relpath}: box {obj['box']} is not inside the {width}x{height} "
                             f"image with positive area")
        vals = [classes.index(obj["name"]), x1 / width, y1 / height, x2 / width, y2 / height,
                int(obj.get("difficult", 0))]
        fields += [_fmt(v) for v in vals]
    fields.append(relpath)
    return "\t".join(fields)


def write_lst(path, lines):
    """Write ``.lst`` lines (from :func:`lst_line`) atomically; returns the path."""
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def parse_lst_line(line, where="<lst>"):
    """Split one ``.lst`` line as ``im2rec.py``'s ``read_list`` does, but raise on errors.

    Returns
    -------
    idx : int
    label : list of float
        Every field between the index and the path (header and objects).
    relpath : str
    """
    parts = [p.strip() for p in line.strip().split("\t")]
    if len(parts) < 3:
        raise ValueError(f"{where}: want tab-separated 'idx, label..., path', found "
                         f"{len(parts)} field(s)")
    try:
        return int(parts[0]), [float(p) for p in parts[1:-1]], parts[-1]
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def read_lst(path):
    """Read a ``.lst`` file: a list of ``(idx, label, relpath)`` (see :func:`parse_lst_line`)."""
    path = Path(path)
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                out.append(parse_lst_line(line, f"{path}:{lineno}"))
    return out


def decode_label(label):
    """Header and objects of a detection label (as read from a ``.lst`` or a record).

    Returns
    -------
    width, height : float
    objects : list of list
        ``[cls, x1, y1, x2, y2, extra...]`` rows, coordinates normalised.
    """
    a, b = int(label[0]), int(label[1])
    if b < 5 or a < 2 or (len(label) - a) % b:
        raise ValueError(f"label with header {a}, object width {b} and {len(label)} values "
                         f"does not split into objects")
    width, height = (label[2], label[3]) if a >= 4 else (None, None)
    objs = [list(label[i:i + b]) for i in range(a, len(label), b)]
    return width, height, objs
