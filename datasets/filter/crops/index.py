"""The crop index ``OUT/<split>.csv`` (columns :data:`INDEX_COLUMNS`, docs/CONTRACTS.md
"Filter run") and its preview ``OUT/<split>_preview.png``, a contact sheet of the best-scored
positive and negative crops."""
import csv
import io
import math
from pathlib import Path

import cv2
import numpy as np

from infra.atomic import atomic_write_bytes, atomic_write_text

#: ``origin`` is ``det`` for a detection, ``gt`` for a ground-truth box added by --add-gt and
#: ``random`` for a box added by --add-random.
INDEX_COLUMNS = ["image_id", "x1", "y1", "x2", "y2", "score", "iou", "label", "dx", "dy",
                 "match_distance", "path", "origin"]


def write_index(path, rows):
    """Write the crop index CSV atomically (columns :data:`INDEX_COLUMNS` + any extra)."""
    fields = list(INDEX_COLUMNS)
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else f"{float(v):.6g}"
    if isinstance(v, np.integer):
        return int(v)
    return v


def read_index(path):
    """Read a crop index CSV into a list of dicts with numeric fields parsed.

    Empty numeric cells (the score of an --add-gt box) become NaN.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"crop index {path} not found; build crops first or point "
                                "--crops at a folder holding train.csv / test.csv")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in INDEX_COLUMNS if c not in (reader.fieldnames or [])
                   and c != "origin"]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; want {INDEX_COLUMNS}")
        rows = []
        for r in reader:
            for k in ("x1", "y1", "x2", "y2", "score", "iou", "dx", "dy", "match_distance"):
                r[k] = float(r[k]) if r[k] != "" else float("nan")
            r["label"] = int(r["label"])
            if r["label"] not in (-1, 1):
                raise ValueError(f"{path}: label must be +1 or -1, got {r['label']}")
            r.setdefault("origin", "det")
            rows.append(r)
    return rows


def contact_sheet(crops, rows, path, per_class=12, tile=80):
    """Write a preview: positives (left column) and negatives (right column), highest score
    first, up to ``per_class`` each; every entry shows [channel 1 | channel 2 | channel 3]
    under a caption with label, score, IoU and match offset."""
    def top(label):
        idx = [i for i, r in enumerate(rows) if (r["label"] == 1) == (label == 1)]
        return sorted(idx, key=lambda i: -np.nan_to_num(rows[i]["score"], nan=2.0))[:per_class]

    columns = [top(1), top(-1)]
    pad, text_h = 4, 14
    cell_w, cell_h = 3 * tile + 2 * pad, tile + text_h
    n = max(1, max(len(c) for c in columns))
    sheet = np.full((pad + n * (cell_h + pad), pad + 2 * (cell_w + 2 * pad), 3), 40, np.uint8)
    for col, idx in enumerate(columns):
        x0 = pad + col * (cell_w + 2 * pad)
        for k, i in enumerate(idx):
            y = pad + k * (cell_h + pad)
            r = rows[i]
            colour = (60, 200, 60) if r["label"] == 1 else (60, 60, 220)  # BGR green / red
            score = "gt" if np.isnan(r["score"]) else f"{r['score']:.2f}"
            cv2.putText(sheet, f"{r['label']:+d} s={score} iou={r['iou']:.2f} "
                               f"d=({r['dx']:.0f},{r['dy']:.0f})",
                        (x0, y + text_h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1,
                        cv2.LINE_AA)
            for c in range(3):
                x = x0 + c * (tile + pad)
                ch = cv2.resize(crops[i][:, :, c], (tile, tile), interpolation=cv2.INTER_AREA)
                sheet[y + text_h:y + text_h + tile, x:x + tile] = ch[:, :, None]
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:
        raise OSError(f"could not encode preview {path}")
    atomic_write_bytes(path, buf.tobytes())
    return path
