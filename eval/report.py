"""Turn a run's summary.json (and its plots) into a readable report.md, and a console table.

The report renders what is present and skips what is missing: every section checks its keys,
and a value that is absent, None, NaN or of an unexpected type prints as "–". Known sections
(docs: the demo's summary.json) are ``detector``, ``two_stage``, ``filter``, ``cv``,
``cv_summary``, ``elapsed_s`` and ``plots``; any other top-level entry lands in "Other values".
Standard library only.
"""
import json
import logging
import math
import os
from pathlib import Path

from infra.atomic import atomic_write_text

log = logging.getLogger(__name__)

DASH = "–"
STAGES = (("detector", "detector only"), ("two_stage", "detector + filter"),
          ("detector_best_f1", "detector only, at its best-F1 threshold (reference)"))
# (key, header, kind) of the stage comparison; kind picks the number format
STAGE_COLUMNS = (("test_map_voc12", "mAP VOC12", "pct"), ("test_map_voc07", "mAP VOC07", "pct"),
                 ("precision", "precision", "ratio"), ("recall", "recall", "ratio"),
                 ("f1", "F1", "ratio"), ("fp_per_image", "FP / image", "num"))
FILTER_ROWS = (("test_auc", "test ROC AUC", "ratio"), ("test_f1", "test F1", "ratio"),
               ("threshold", "threshold (chosen on validation crops)", "num"),
               ("threshold_rule", "threshold rule (recall: keep that share of lesions; f1)",
                "text"), ("keep_recall", "lesions kept on validation (recall rule)", "ratio"),
               ("n_train_pos", "train positives", "int"), ("n_train_neg", "train negatives", "int"),
               ("n_test_pos", "test positives", "int"), ("n_test_neg", "test negatives", "int"))
KNOWN = {"detector", "two_stage", "filter", "cv", "cv_summary", "elapsed_s", "plots", "title",
         "recall_by", "two_stage_sweep", "intervals", "acceptance"}
#: (metric of eval.bootstrap, label, signed) rows of the intervals section, in reading order.
INTERVAL_ROWS = (("detector_map_voc12", "detector only: mAP VOC12", False),
                 ("two_stage_map_voc12", "detector + filter: mAP VOC12", False),
                 ("detector_precision", "detector only: precision", False),
                 ("two_stage_precision", "detector + filter: precision", False),
                 ("precision_gain", "precision gain (paired)", True),
                 ("detector_recall", "detector only: recall", False),
                 ("two_stage_recall", "detector + filter: recall", False),
                 ("recall_ratio", "recall ratio (paired)", False),
                 ("fp_removed_share", "false positives removed (paired)", False),
                 ("f1_gain", "F1 gain (paired)", True),
                 ("filter_auc", "filter: test ROC AUC", False))
#: The intervals the console table ends with: what the filter changes, and its AUC.
CONSOLE_INTERVALS = ("precision_gain", "recall_ratio", "fp_removed_share", "f1_gain",
                     "filter_auc")
RECALL_BY = (("contrast", "lesion contrast (1 - grey / contralateral grey)"),
             ("size", "lesion size (square root of the box area, px)"))


def finite_number(v):
    """float(v) or None for missing, non-numeric or non-finite values."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt(v, kind="num"):
    """One cell: ``pct`` (0.4567 -> 45.67%), ``ratio`` (0.457), ``int``, ``num`` (4 digits),
    ``text``; missing or unusable values give "–"."""
    if kind == "text":
        if v is None or v == "" or (isinstance(v, float) and not math.isfinite(v)):
            return DASH
        return str(v)
    f = finite_number(v)
    if f is None:
        return DASH if not isinstance(v, str) or not v else v
    if kind == "pct":
        return f"{100 * f:.2f}%"
    if kind == "ratio":
        return f"{f:.3f}"
    if kind == "int":
        return f"{f:.0f}"
    return f"{f:.4g}"


def _get(d, key):
    return d.get(key) if isinstance(d, dict) else None


def _mean_std(mean, std, kind="pct"):
    if finite_number(mean) is None:
        return DASH
    return fmt(mean, kind) + (f" ± {fmt(std, kind)}" if finite_number(std) is not None else "")


def _params(p):
    if isinstance(p, dict):
        return ", ".join(f"{k}={v}" for k, v in p.items()) or DASH
    if isinstance(p, str):
        try:
            return _params(json.loads(p))
        except (ValueError, TypeError):
            return p or DASH
    return fmt(p, "text")


def _duration(seconds):
    s = finite_number(seconds)
    if s is None:
        return DASH
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {sec:02d} s" if m else f"{s:.1f} s")


# --------------------------------------------------------------------------- console
def format_summary_table(summary):
    """Plain-text table for the console: one row per stage (detector only, detector + filter)
    with mAP VOC12/VOC07, precision, recall, F1 and FP per image.

    Parameters
    ----------
    summary : dict
        A run's summary (missing stages or keys show as "–").

    Returns
    -------
    str
        Several lines, no trailing newline.
    """
    summary = summary if isinstance(summary, dict) else {}
    header = ["stage"] + [h for _, h, _ in STAGE_COLUMNS]
    rows = [[label] + [fmt(_get(summary.get(key), k), kind) for k, _, kind in STAGE_COLUMNS]
            for key, label in STAGES]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
    thr = _get(summary.get("detector"), "score_threshold")
    fthr = _get(summary.get("filter"), "threshold")
    if finite_number(thr) is not None or finite_number(fthr) is not None:
        out.append(f"(detector score threshold {fmt(thr)}, filter threshold {fmt(fthr)})")
    gains = interval_rows(summary, CONSOLE_INTERVALS)
    if gains:
        level = finite_number(_get(summary.get("intervals"), "level")) or 0.95
        out.append(f"({100 * level:.0f} % intervals over test groups: " + "; ".join(
            f"{label.replace(' (paired)', '')} {v} [{lo}, {hi}]" for label, v, lo, hi in gains)
            + ")")
    return "\n".join(out)


# --------------------------------------------------------------------------- markdown
def _cell(v):
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(header, rows, align=None):
    """A GitHub-markdown table (cells escaped); ``align`` is one 'l'/'r' per column (default:
    first column left, the others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _section_stages(summary):
    if not any(isinstance(summary.get(k), dict) for k, _ in STAGES):
        return []
    rows = [[label] + [fmt(_get(summary.get(key), k), kind) for k, _, kind in STAGE_COLUMNS]
            for key, label in STAGES if isinstance(summary.get(key), dict)]
    out = ["## Detector only vs detector + filter (test set)", "",
           md_table(["stage"] + [h for _, h, _ in STAGE_COLUMNS], rows), ""]
    det = summary.get("detector") or {}
    notes = []
    if finite_number(_get(det, "score_threshold")) is not None:
        notes.append(f"detector score threshold {fmt(det['score_threshold'])} (precision, "
                     f"recall, F1 and FP/image are counted at it)")
    if finite_number(_get(summary.get("filter"), "threshold")) is not None:
        notes.append(f"filter threshold {fmt(summary['filter']['threshold'])}")
    if notes:
        out += ["Operating point: " + "; ".join(notes) + ".", ""]
    return out


def _section_cv(summary):
    out = []
    det = summary.get("detector") if isinstance(summary.get("detector"), dict) else {}
    best = summary.get("best_set", det.get("best_set"))
    cvs = [r for r in summary.get("cv_summary") or [] if isinstance(r, dict)] \
        if isinstance(summary.get("cv_summary"), list) else []
    cv = [r for r in summary.get("cv") or [] if isinstance(r, dict)] \
        if isinstance(summary.get("cv"), list) else []
    if not (cvs or cv or finite_number(det.get("cv_map_mean")) is not None):
        return out
    out += ["## Cross-validation (detector)", ""]
    if finite_number(det.get("cv_map_mean")) is not None:
        out += [f"Cross-validated mAP of the chosen set (mean ± std over folds): "
                f"{_mean_std(det.get('cv_map_mean'), det.get('cv_map_std'))}.", ""]
    if cvs:
        rows = []
        for r in cvs:
            mark = " (chosen)" if best is not None and str(r.get("set")) == str(best) else ""
            rows.append([fmt(r.get("set"), "text") + mark, _params(r.get("params")),
                         _mean_std(r.get("map_voc12_mean"), r.get("map_voc12_std")),
                         _mean_std(r.get("map_voc07_mean"), r.get("map_voc07_std"))])
        out += ["Per hyper-parameter set (mean ± std over folds):", "",
                md_table(["set", "params", "mAP VOC12", "mAP VOC07"], rows, "llrr"), ""]
    if cv:
        rows = [[fmt(r.get("set"), "text"), fmt(r.get("fold"), "text"), _params(r.get("params")),
                 fmt(r.get("epochs"), "text"),
                 fmt(r.get("map_voc12"), "pct"), fmt(r.get("map_voc07"), "pct"),
                 fmt(r.get("best_epoch_map_voc12"), "pct")] for r in cv]
        out += ["Per fold, each model scored at its last epoch on its validation fold (a time "
                "budget trains later folds fewer epochs when the machine slowed down); the "
                "last column is the best validated epoch, chosen on that same fold "
                "(optimistic, for reference only):", "",
                md_table(["set", "fold", "params", "epochs", "mAP VOC12", "mAP VOC07",
                          "best epoch (optimistic)"], rows, "lrlrrrr"), ""]
    return out


def _section_recall_by(summary):
    rb = summary.get("recall_by")
    if not isinstance(rb, dict):
        return []
    out = ["## Recall at the operating point, by lesion (test set)", "",
           "Which lesions the detector finds (any detection at or above its threshold with "
           "IoU >= 0.5), by how visible and how large they are:", ""]
    for key, label in RECALL_BY:
        stages = rb.get(key)
        if not isinstance(stages, dict) or not isinstance(stages.get("detector"), list):
            continue
        two = stages.get("two_stage") or [{}] * len(stages["detector"])
        rows = [[f"{fmt(r.get('low'))} – {fmt(r.get('high'))}", fmt(r.get("n"), "int"),
                 fmt(r.get("recall"), "ratio"), fmt(t.get("recall"), "ratio")]
                for r, t in zip(stages["detector"], two)]
        out += [md_table([label, "lesions", "detector", "detector + filter"], rows), ""]
    return out


def _section_sweep(summary):
    rows = summary.get("two_stage_sweep")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        return []
    thr = finite_number(_get(summary.get("detector"), "score_threshold"))
    table = []
    for r in sorted(rows, key=lambda r: finite_number(r.get("det_threshold")) or 0.0):
        t = finite_number(r.get("det_threshold"))
        mark = " (operating)" if thr is not None and t is not None and abs(t - thr) < 1e-9 \
            else ""
        table.append([fmt(t) + mark, fmt(r.get("filter_threshold")),
                      f"{fmt(r.get('detector_precision'), 'ratio')} / "
                      f"{fmt(r.get('detector_recall'), 'ratio')}",
                      f"{fmt(r.get('two_stage_precision'), 'ratio')} / "
                      f"{fmt(r.get('two_stage_recall'), 'ratio')}",
                      fmt(r.get("precision_gain"), "ratio"), fmt(r.get("recall_ratio"), "ratio"),
                      f"{fmt(r.get('detector_f1'), 'ratio')} → "
                      f"{fmt(r.get('two_stage_f1'), 'ratio')}"])
    return ["## The filter's effect by detector threshold (test set)", "",
            "The same test detections cut at other detector thresholds; at each, the filter's "
            "threshold comes from its own rule on validation crops at that detector threshold "
            "(no test data chosen on). The precision gain at a threshold is bounded by 1 minus "
            "the detector's precision there.", "",
            md_table(["detector threshold", "filter threshold", "detector P / R",
                      "detector + filter P / R", "precision gain", "recall ratio", "F1"],
                     table), ""]


def _interval_cell(v, signed):
    f = finite_number(v)
    return DASH if f is None else f"{f:+.3f}" if signed else f"{f:.3f}"


def interval_rows(summary, keys=None):
    """``[label, value, low, high]`` rows of ``summary["intervals"]`` (eval.bootstrap),
    those of the metrics ``keys`` only when given."""
    ci = summary.get("intervals") if isinstance(summary, dict) else None
    metrics = _get(ci, "metrics")
    if not isinstance(metrics, dict):
        return []
    return [[label] + [_interval_cell(_get(metrics[k], x), signed)
                       for x in ("value", "low", "high")]
            for k, label, signed in INTERVAL_ROWS
            if isinstance(metrics.get(k), dict) and (keys is None or k in keys)]


def _section_intervals(summary):
    rows = interval_rows(summary)
    if not rows:
        return []
    ci = summary["intervals"]
    level = finite_number(ci.get("level"))
    pct = f"{100 * level:.0f} %" if level is not None else "confidence"
    fallback = sorted(k for k, m in ci["metrics"].items()
                      if isinstance(m, dict) and m.get("method") not in (None, ci.get("method")))
    cv_line = _cv_against_interval(summary)
    return [f"## How far the test numbers could move ({pct} intervals)", "",
            f"The test split resampled by group ({fmt(ci.get('n_groups'), 'int')} groups: "
            f"screenshots, or patients with --groups; {fmt(ci.get('n_images'), 'int')} images), "
            f"{fmt(ci.get('n_resamples'), 'int')} times with seed {fmt(ci.get('seed'), 'int')}, "
            f"{fmt(ci.get('method'), 'text')} intervals; both stages are scored on the same "
            "resampled images, so the gains and the ratio are paired. They say how much the "
            "numbers depend on which images were drawn for testing, not how much they vary "
            "with the training seed.", "",
            md_table(["", "value", "low", "high"], rows), ""] + (
        [f"Percentile interval where {fmt(ci.get('method'), 'text')} is undefined: "
         f"{', '.join(fallback)}.", ""] if fallback else []) + ([cv_line, ""] if cv_line else [])


def _cv_against_interval(summary):
    """Where the cross-validation mean falls against the test mAP's interval: does CV predict
    the test score as closely as the test split can tell?"""
    cv = finite_number(_get(summary.get("detector"), "cv_map_mean"))
    m = _get(_get(summary.get("intervals"), "metrics"), "detector_map_voc12")
    low, high = finite_number(_get(m, "low")), finite_number(_get(m, "high"))
    if cv is None or low is None or high is None:
        return None
    where = ("inside" if low <= cv <= high else "below" if cv < low else "above")
    return (f"The cross-validation mean mAP VOC12, {fmt(cv, 'pct')}, lies {where} the test "
            f"mAP's interval ({fmt(low, 'pct')} – {fmt(high, 'pct')}).")


def _section_acceptance(summary):
    """The README's lines for the CPU demo, as ``eval.acceptance`` judged them."""
    a = summary.get("acceptance")
    lines = _get(a, "lines")
    if not isinstance(lines, list) or not lines:
        return []
    mark = {True: "held", False: "**broken**", None: "not judged (a number is missing)"}
    rows = [[fmt(_get(line, "line"), "text"), fmt(_get(line, "value")),
             fmt(_get(line, "rule"), "text"), mark.get(_get(line, "held"), DASH)]
            for line in lines if isinstance(line, dict)]
    out = ["## The lines the CPU demo is held to (README)", "",
           md_table(["line", "value", "rule", "verdict"], rows, "lrll"), ""]
    facts = [fmt(_get(a, "precision_note"), "text"), fmt(_get(a, "cpu"), "text"),
             f"Verdict: {fmt(_get(a, 'verdict'), 'text')}."]
    return out + [" ".join(f for f in facts if f != DASH), ""]


def _section_filter(summary):
    f = summary.get("filter")
    if not isinstance(f, dict):
        return []
    rows = [[label, fmt(f.get(k), kind)] for k, label, kind in FILTER_ROWS if k in f]
    known = {k for k, _, _ in FILTER_ROWS}
    rows += [[k, fmt(v)] for k, v in f.items() if k not in known and _scalar(v)]
    if not rows:
        return []
    return ["## Filter (fused-crop classifier)", "", md_table(["", "value"], rows), ""]


def _scalar(v):
    return v is None or isinstance(v, (str, int, float, bool))


def _section_plots(summary, run_dir):
    plots = summary.get("plots")
    if not isinstance(plots, dict) or not plots:
        return []
    out = ["## Plots", ""]
    for name, rel in plots.items():
        if not isinstance(rel, str) or not rel:
            continue
        target = Path(rel)
        exists = True if run_dir is None else (
            target if target.is_absolute() else Path(run_dir) / target).exists()
        title = str(name).replace("_", " ")
        if exists:
            out += [f"### {title}", "", f"![{title}]({Path(rel).as_posix()})", ""]
        else:
            out += [f"### {title}", "", f"*(missing: {rel})*", ""]
    return out


def _section_other(summary):
    rows = []
    for k, v in summary.items():
        if k in KNOWN or k == "best_set":
            continue
        if _scalar(v):
            rows.append([k, fmt(v) if finite_number(v) is not None else fmt(v, "text")])
        elif isinstance(v, dict):
            rows += [[f"{k}.{kk}", fmt(vv) if finite_number(vv) is not None else fmt(vv, "text")]
                     for kk, vv in v.items() if _scalar(vv)]
    for stage in ("detector", "two_stage"):
        d = summary.get(stage)
        if isinstance(d, dict):
            shown = {k for k, _, _ in STAGE_COLUMNS} | {"score_threshold", "cv_map_mean",
                                                          "cv_map_std", "best_set"}
            rows += [[f"{stage}.{k}", fmt(v) if finite_number(v) is not None else fmt(v, "text")]
                     for k, v in d.items() if k not in shown and _scalar(v)]
    if not rows:
        return []
    return ["## Other values", "", md_table(["key", "value"], rows), ""]


def render_report(summary, run_dir=None, title=None):
    """Markdown text of a run report.

    Parameters
    ----------
    summary : dict
        The run's summary.json content; any key may be missing.
    run_dir : str or Path, optional
        Folder the plot paths are relative to; used to mark missing PNGs.
    title : str, optional
        Heading; default ``summary["title"]`` or "Run report".

    Returns
    -------
    str
    """
    summary = summary if isinstance(summary, dict) else {}
    title = title or summary.get("title") or "Run report"
    out = [f"# {title}", ""]
    facts = []
    if run_dir is not None:
        facts.append(f"run folder `{Path(run_dir).name}`")
    if finite_number(summary.get("elapsed_s")) is not None:
        facts.append(f"elapsed {_duration(summary['elapsed_s'])}")
    if facts:
        out += [", ".join(facts).capitalize() + ".", ""]
    for section in (_section_stages(summary), _section_acceptance(summary),
                    _section_intervals(summary), _section_cv(summary),
                    _section_sweep(summary), _section_recall_by(summary),
                    _section_filter(summary),
                    _section_plots(summary, run_dir), _section_other(summary)):
        out += section
    return "\n".join(out).rstrip() + "\n"


def write_report(run_dir, summary=None, name="report.md", title=None):
    """Write ``run_dir/report.md`` (atomically) from ``summary`` or ``run_dir/summary.json``.

    Returns
    -------
    pathlib.Path
        The report path.
    """
    run_dir = Path(run_dir)
    if summary is None:
        with open(run_dir / "summary.json", encoding="utf-8") as f:
            summary = json.load(f)
    path = atomic_write_text(run_dir / name, render_report(summary, run_dir, title))
    log.info("report written to %s", os.fspath(path))
    return path
