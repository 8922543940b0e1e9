"""Pascal VOC XML annotations: write one file per sample, read it back safely.

Coordinates inside the code are GluonCV's ``[x1, y1, x2, y2]`` floats (0-based, no +1,
docs/CONTRACTS.md). The XML stores VOC's 1-based values, ``coordinate + 1`` for all four,
because that is what ``gluoncv.data.VOCDetection`` undoes (it subtracts 1 from each): a file
written here and read by GluonCV gives back exactly our boxes. Reading goes through
``defusedxml`` so a hostile file cannot expand entities or reach the network.
"""
import logging
from pathlib import Path
from xml.sax.saxutils import escape

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from datasets.prepared.errors import BadFileError
from infra.atomic import atomic_write_text

log = logging.getLogger(__name__)


class VOCFormatError(BadFileError):
    """An annotation file that is not the VOC XML we expect."""


def _num(v):
    """Shortest faithful text for a coordinate: integers without '.0', else 2 decimals."""
    v = float(v)
    if v == int(v):
        return str(int(v))
    return f"{v:.2f}".rstrip("0").rstrip(".")


def voc_xml(filename, width, height, objects, depth=3, folder="JPEGImages"):
    """Build the VOC XML text of one image.

    Parameters
    ----------
    filename : str
        Image file name stored in ``<filename>`` (``<id>.jpg``).
    width, height, depth : int
        Image size in pixels and channel count.
    objects : list of dict
        Each ``{"name": str, "box": [x1, y1, x2, y2], "difficult": 0|1, "truncated": 0|1}``;
        box in 0-based pixel floats, ``x2 > x1``, ``y2 > y1``.
    folder : str
        Value of ``<folder>``.

    Returns
    -------
    str
        The XML document.
    """
    lines = ["<annotation>",
             f"  <folder>{escape(folder)}</folder>",
             f"  <filename>{escape(filename)}</filename>",
             "  <size>",
             f"    <width>{int(width)}</width>",
             f"    <height>{int(height)}</height>",
             f"    <depth>{int(depth)}</depth>",
             "  </size>",
             "  <segmented>0</segmented>"]
    for obj in objects:
        x1, y1, x2, y2 = (float(c) for c in obj["box"])
        if not (x2 > x1 and y2 > y1):
            raise ValueError(f"{filename}: box {obj['box']} has no area (want x2 > x1, y2 > y1)")
        lines += ["  <object>",
                  f"    <name>{escape(str(obj['name']))}</name>",
                  "    <pose>Unspecified</pose>",
                  f"    <truncated>{int(obj.get('truncated', 0))}</truncated>",
                  f"    <difficult>{int(obj.get('difficult', 0))}</difficult>",
                  "    <bndbox>",
                  # VOC is 1-based; GluonCV's VOCDetection subtracts 1 from every coordinate.
                  f"      <xmin>{_num(x1 + 1)}</xmin>",
                  f"      <ymin>{_num(y1 + 1)}</ymin>",
                  f"      <xmax>{_num(x2 + 1)}</xmax>",
                  f"      <ymax>{_num(y2 + 1)}</ymax>",
                  "    </bndbox>",
                  "  </object>"]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def write_voc(path, filename, width, height, objects, depth=3):
    """Write one VOC XML file atomically (temporary file + rename).

    Parameters are those of :func:`voc_xml`; ``path`` is the ``.xml`` destination.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    return atomic_write_text(path, voc_xml(filename, width, height, objects, depth=depth))


def _text(elem, tag, path, required=True):
    child = elem.find(tag)
    if child is None or child.text is None:
        if required:
            raise VOCFormatError(f"{path}: <{elem.tag}> has no <{tag}> text")
        return None
    return child.text.strip()


def _float(elem, tag, path):
    text = _text(elem, tag, path)
    try:
        return float(text)
    except ValueError:
        raise VOCFormatError(f"{path}: <{tag}> should be a number, found {text!r}") from None


def read_voc(path):
    """Read one VOC XML file.

    Parameters
    ----------
    path : str or Path
        The ``.xml`` file.

    Returns
    -------
    dict
        ``{"filename": str, "width": int, "height": int, "depth": int,
        "objects": [{"name", "box": [x1, y1, x2, y2], "difficult", "truncated"}]}`` with
        boxes in 0-based GluonCV pixels (the stored values minus 1).

    Raises
    ------
    VOCFormatError
        Malformed XML, forbidden constructs (entities, DTDs), or missing fields.
    """
    path = Path(path)
    try:
        root = DET.parse(str(path)).getroot()
    except DefusedXmlException as e:
        raise VOCFormatError(f"{path}: refused unsafe XML ({type(e).__name__})") from None
    except DET.ParseError as e:
        raise VOCFormatError(f"{path}: not well-formed XML ({e})") from None
    if root.tag != "annotation":
        raise VOCFormatError(f"{path}: root element should be <annotation>, found <{root.tag}>")
    size = root.find("size")
    if size is None:
        raise VOCFormatError(f"{path}: no <size> element")
    out = {"filename": _text(root, "filename", path, required=False) or "",
           "width": int(_float(size, "width", path)),
           "height": int(_float(size, "height", path)),
           "depth": int(_float(size, "depth", path)) if size.find("depth") is not None else 3,
           "objects": []}
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            raise VOCFormatError(f"{path}: <object> without <bndbox>")
        box = [_float(bb, t, path) - 1 for t in ("xmin", "ymin", "xmax", "ymax")]
        flags = {}
        for tag in ("difficult", "truncated"):
            t = _text(obj, tag, path, required=False)
            flags[tag] = int(float(t)) if t not in (None, "") else 0
        out["objects"].append({"name": _text(obj, "name", path), "box": box, **flags})
    return out
