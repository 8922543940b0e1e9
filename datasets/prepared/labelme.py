"""labelme JSON -> detection boxes (axis-aligned bounding rectangles of the shapes).

Notes 002 ("对标签的处理" 2): a rectangle gives its two corners; every other shape
(polygon, "ellipse", "sector", ...) gives the bounding rectangle of its points. A circle
is stored by labelme as [centre, a point on the circle], so its box is centre ± radius.
Unknown shape types with at least two points are boxed the same way, with a warning.
``__ignore__`` shapes (labelme's ignore label) become *difficult* objects, or are skipped,
never plain objects. Every other label is a class of its own (classes come from the data);
a label map renames or merges labels. Shapes sharing a label and a ``group_id`` are one
object, as in labelme's own instance conversion (labelme2coco).

The image is found from ``imagePath`` (Windows back-slashes and non-ASCII names allowed),
next to the JSON, or decoded from the embedded ``imageData``.
"""
import base64
import binascii
import json
import logging
import math
from pathlib import Path, PureWindowsPath

from datasets.prepared.errors import BadFileError
from datasets.prepared.images import IMAGE_EXTS, decode_image, read_image

log = logging.getLogger(__name__)

IGNORE = "__ignore__"
# Types whose box is the bounding rectangle of their points. "mask" (labelme >= 5.2) stores
# its bounding-box corners as the two points; "ellipse"/"sector" are the notes' names.
POINT_SET_TYPES = ("rectangle", "polygon", "linestrip", "line", "point", "points", "mask",
                   "ellipse", "sector")
IGNORE_POLICIES = ("difficult", "skip")


def _parse_inline_map(spec):
    """``"strain,cyst=lesion;artefact=__ignore__"`` -> ``{label: class}`` (see parse_label_map)."""
    pairs = []
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        if part.count("=") > 1:
            # The older 'a=x,b=y' form: each comma item is one pair.
            items = [i for i in part.split(",") if i.strip()]
            if any(i.count("=") != 1 for i in items):
                raise ValueError(f"--label-map: cannot read {part!r}; want 'label[,label...]=class'"
                                 f" mappings separated by ';', e.g. 'strain,cyst=lesion;x=__ignore__'")
            pairs += [([i.split("=", 1)[0]], i.split("=", 1)[1]) for i in items]
            continue
        if "=" not in part:
            raise ValueError(f"--label-map: mapping {part!r} has no '='; want "
                             f"'label[,label...]=class', e.g. 'strain,cyst=lesion'")
        left, target = part.split("=", 1)
        pairs.append((left.split(","), target))
    mapping = {}
    for labels, target in pairs:
        target = target.strip()
        labels = [lab.strip() for lab in labels]
        if not target or "," in target:
            raise ValueError(f"--label-map: target {target!r} of {labels} must be one class name "
                             f"(separate mappings with ';': 'a,b=x;c=y')")
        if not all(labels):
            raise ValueError(f"--label-map: empty label before '={target}'")
        for lab in labels:
            if mapping.get(lab, target) != target:
                raise ValueError(f"--label-map: label {lab!r} is mapped to both "
                                 f"{mapping[lab]!r} and {target!r}")
            mapping[lab] = target
    if not mapping:
        raise ValueError(f"--label-map {spec!r}: no mapping; want 'label[,label...]=class'")
    return mapping


def parse_label_map(spec, classes=None):
    """Read a labelme-label -> class mapping (renames and merges).

    Parameters
    ----------
    spec : str or None
        A JSON file holding an object ``{"labelme label": "class"}``, or inline text: mappings
        separated by ``;``, each ``label[,label...]=class``, e.g.
        ``"strain,cyst=lesion;artefact=__ignore__"`` (the older ``"a=lesion,b=lesion"`` form,
        one pair per comma item, is read too). Labels not in the map keep their name. None
        means no map.
    classes : sequence of str, optional
        When the class list is fixed (``--classes``), every target must be one of them or
        ``__ignore__``.

    Returns
    -------
    dict or None

    Raises
    ------
    ValueError
        Unreadable or malformed spec, a label mapped twice, or a target outside ``classes``.
    """
    if spec is None:
        return None
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.is_file():
        try:
            mapping = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"--label-map {spec}: want a JSON object file, could not read it "
                             f"({e})") from None
        if not isinstance(mapping, dict) or not all(isinstance(v, str) and v.strip()
                                                    for v in mapping.values()):
            raise ValueError(f"--label-map {spec}: want a JSON object {{label: class}} with "
                             f"class names as values, found {str(mapping)[:80]}")
        mapping = {str(k).strip(): v.strip() for k, v in mapping.items()}
    else:
        mapping = _parse_inline_map(spec)
    if classes is not None:
        allowed = set(classes) | {IGNORE}
        bad = sorted(set(mapping.values()) - allowed)
        if bad:
            raise ValueError(f"--label-map: targets {bad} are not in --classes {list(classes)}; "
                             f"map to one of {sorted(allowed)} or add them to --classes")
    return mapping


def load_json(path):
    """Parse a labelme JSON file (UTF-8, or GB18030); raise BadFileError if it is not one."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BadFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if not raw.strip():
        raise BadFileError(f"{path}: empty JSON file")
    for enc in ("utf-8-sig", "gb18030"):
        # labelme writes UTF-8; files re-saved by Chinese Windows editors can be GB18030.
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise BadFileError(f"{path}: not UTF-8 or GB18030 text")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadFileError(f"{path}: broken JSON at line {e.lineno} column {e.colno}: "
                           f"{e.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise BadFileError(f"{path}: not a labelme file (want an object with a 'shapes' list)")
    return data


def is_labelme(path):
    """Cheap test whether a .json file looks like labelme output (has a "shapes" list)."""
    try:
        load_json(Path(path))
        return True
    except BadFileError:
        return False


def image_candidates(json_path, image_path):
    """Where the image of a labelme file may be, in the order tried.

    ``imagePath`` is relative to the JSON's folder and may use Windows separators.
    """
    json_path = Path(json_path)
    folder = json_path.parent
    out = []
    if image_path:
        posix = image_path.replace("\\", "/")
        out.append(folder / posix)
        out.append(folder / PureWindowsPath(image_path).name)
    out += [folder / (json_path.stem + ext) for ext in IMAGE_EXTS]
    out += [folder / (json_path.stem + ext.upper()) for ext in IMAGE_EXTS]
    seen, uniq = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    return uniq


def find_image(json_path, data=None):
    """Path of the image file of a labelme JSON, or None if only ``imageData`` can supply it."""
    data = data if data is not None else load_json(Path(json_path))
    for p in image_candidates(json_path, data.get("imagePath") or ""):
        if p.is_file():
            return p
    return None


def _points(shape, where):
    pts = shape.get("points")
    if not isinstance(pts, list):
        raise ValueError(f"{where}: 'points' should be a list, found {type(pts).__name__}")
    out = []
    for p in pts:
        if (not isinstance(p, (list, tuple)) or len(p) < 2
                or not all(isinstance(c, (int, float)) and math.isfinite(c) for c in p[:2])):
            raise ValueError(f"{where}: each point should be [x, y] numbers, found {p!r}")
        out.append((float(p[0]), float(p[1])))
    return out


def shape_box(shape, where="shape"):
    """Axis-aligned box of one labelme shape.

    Parameters
    ----------
    shape : dict
        A labelme shape (``shape_type``, ``points``).
    where : str
        Context for messages.

    Returns
    -------
    box : list of float or None
        ``[x1, y1, x2, y2]`` in image pixels (may have zero area: the caller decides), or
        None if the shape cannot give a box.
    warning : str or None
        Why the box is approximate or missing.
    """
    kind = shape.get("shape_type") or "polygon"  # labelme < 3 wrote no shape_type
    try:
        pts = _points(shape, where)
    except ValueError as e:
        return None, str(e)
    if not pts:
        return None, f"{where}: {kind} shape has no points"
    if kind == "circle":
        if len(pts) < 2:
            return None, f"{where}: circle needs [centre, point on circle], found {len(pts)} point"
        (cx, cy), (px, py) = pts[0], pts[1]
        r = math.hypot(px - cx, py - cy)
        return [cx - r, cy - r, cx + r, cy + r], None
    warning = None
    if kind not in POINT_SET_TYPES:
        if len(pts) < 2:
            return None, (f"{where}: unknown shape_type {kind!r} with {len(pts)} point; "
                          f"cannot make a box")
        warning = f"{where}: unknown shape_type {kind!r}; using the bounding box of its points"
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    return [min(xs), min(ys), max(xs), max(ys)], warning


def _merge_groups(objects, notes, json_name):
    """One object per labelme instance: shapes sharing a label and a ``group_id`` are parts
    of one object (labelme2coco unions their masks), so their box is the union of boxes."""
    out, index = [], {}
    for obj in objects:
        gid = obj["group_id"]
        key = (obj["label"], gid)
        if gid is None or key not in index:
            if gid is not None:
                index[key] = len(out)
            out.append(dict(obj, parts=1))
            continue
        kept = out[index[key]]
        b, c = kept["box"], obj["box"]
        kept["box"] = [min(b[0], c[0]), min(b[1], c[1]), max(b[2], c[2]), max(b[3], c[3])]
        kept["difficult"] = max(kept["difficult"], obj["difficult"])
        kept["parts"] += 1
    for obj in out:
        if obj["parts"] > 1:
            notes.append(("merged", f"{json_name}: {obj['parts']} shapes {obj['label']!r} with "
                                    f"group_id {obj['group_id']} are one object (union box)"))
    return [{k: v for k, v in o.items() if k != "parts"} for o in out]


def read_labelme(json_path, label_map=None, ignore="difficult"):
    """Read a labelme file into detection objects.

    Parameters
    ----------
    json_path : str or Path
        The labelme ``.json``.
    label_map : dict or None
        labelme label -> class name or ``__ignore__`` (see :func:`parse_label_map`); labels
        it does not name keep their own name as class.
    ignore : {"difficult", "skip"}
        What ``__ignore__`` shapes become.

    Returns
    -------
    dict
        ``{"json": Path, "image_path": Path or None, "image_data": bytes or None,
        "width": int or None, "height": int or None, "objects": [{"name", "box",
        "difficult", "label", "shape_type", "group_id"}], "notes": [(kind, message)]}``.
        ``name`` is the class, or ``__ignore__`` for an ignore shape kept as a difficult
        object (its class is chosen once the class list is known). Shapes with the same
        label and a non-null ``group_id`` are one object whose box is the union (labelme's
        instance convention). Boxes are raw (not clipped, possibly zero-area); ``notes``
        kinds are ``"warning"`` (box kept), ``"skipped"`` (shape unusable), ``"ignored"``
        (an ``__ignore__`` shape left out on purpose) and ``"merged"`` (grouped shapes).

    Raises
    ------
    BadFileError
        Broken JSON, not a labelme file, or no image (neither a file nor ``imageData``).
    """
    if ignore not in IGNORE_POLICIES:
        raise ValueError(f"ignore={ignore!r}; want one of {IGNORE_POLICIES}")
    json_path = Path(json_path)
    data = load_json(json_path)
    image_path, image_data = _image_source(json_path, data)
    objects, notes = [], []
    for i, shape in enumerate(data["shapes"]):
        obj = _shape_object(shape, f"{json_path.name} shape {i}", label_map, ignore, notes)
        if obj is not None:
            objects.append(obj)
    objects = _merge_groups(objects, notes, json_path.name)
    w, h = data.get("imageWidth"), data.get("imageHeight")
    return {"json": json_path, "image_path": image_path, "image_data": image_data,
            "width": int(w) if isinstance(w, (int, float)) else None,
            "height": int(h) if isinstance(h, (int, float)) else None,
            "objects": objects, "notes": notes}


def _image_source(json_path, data):
    """``(image file or None, embedded imageData bytes or None)`` of a labelme document;
    BadFileError when neither exists or imageData is not base64."""
    image_path = find_image(json_path, data)
    if image_path is not None:
        return image_path, None
    b64 = data.get("imageData")
    if not b64:
        cands = image_candidates(json_path, data.get("imagePath") or "")
        tried = ", ".join(p.name for p in cands[:3])
        raise BadFileError(f"{json_path}: image missing: imagePath "
                           f"{data.get('imagePath')!r} not found (tried {tried}) and no "
                           f"embedded imageData")
    try:
        return None, base64.b64decode(b64, validate=False)
    except (binascii.Error, ValueError, TypeError) as e:
        raise BadFileError(f"{json_path}: imageData is not valid base64 ({e})") from None


def _shape_object(shape, where, label_map, ignore, notes):
    """One labelme shape as a detection object (see :func:`read_labelme`), or None when it is
    skipped or ignored; why goes to ``notes``."""
    if not isinstance(shape, dict):
        notes.append(("skipped", f"{where}: not an object"))
        return None
    label = str(shape.get("label") if shape.get("label") is not None else "").strip()
    where = f"{where} ({label!r})"
    if not label:
        notes.append(("skipped", f"{where}: empty label"))
        return None
    box, warning = shape_box(shape, where)
    if box is None:
        notes.append(("skipped", warning))
        return None
    if warning:
        notes.append(("warning", warning))
    name = (label_map or {}).get(label, label)
    flags = shape.get("flags") or {}
    difficult = int(bool(isinstance(flags, dict) and flags.get("difficult")))
    if name == IGNORE:
        if ignore == "skip":
            notes.append(("ignored", f"{where}: {IGNORE} shape skipped (ignore='skip')"))
            return None
        difficult = 1
    gid = shape.get("group_id")
    return {"name": name, "box": box, "difficult": difficult, "label": label,
            "shape_type": shape.get("shape_type") or "polygon",
            "group_id": gid if isinstance(gid, (int, str)) else None}


def load_image(ann):
    """Decode the image of a :func:`read_labelme` result (file, else embedded imageData).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8 BGR.

    Raises
    ------
    BadFileError
        The image cannot be read or decoded.
    """
    if ann["image_path"] is not None:
        img = read_image(ann["image_path"])
    else:
        img = decode_image(ann["image_data"], f"{ann['json']} (embedded imageData)")
    h, w = img.shape[:2]
    if ann["width"] and ann["height"] and (ann["width"], ann["height"]) != (w, h):
        log.warning("%s: JSON says %dx%d but the image is %dx%d; boxes are taken as drawn on "
                    "the image", ann["json"], ann["width"], ann["height"], w, h)
    return img
