"""The monitor's HTML page: tables and pictures, self-contained (inline SVG, no CDN, no script),
readable offline.

Rendered from the report's JSON document (``MonitorReport.to_json``) plus the recent reports'
points (:func:`recent_windows`). Pictures: for each drifted feature its reference and current
distributions overlaid (numeric columns: densities from the whylogs KLL quantiles in
``profiles``; categorical columns: shares of the most frequent values), the score distribution,
and drift score, realized and estimated performance across recent windows. Everything comes
from summaries already in the report, so drawing costs milliseconds whatever the window size.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.profiling import SCORE_COLUMN

REFERENCE_COLOR, CURRENT_COLOR = "#1f77b4", "#ff7f0e"
HISTORY_WINDOWS = 30  # recent reports drawn in the "across windows" charts
_BINS = 30
_W, _H, _PAD = 520, 170, 36

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
    ".drift{background:#fde2e2}.ok{background:#e6f4e6}.warn{background:#fff4d6}"
    "figure{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top}"
    "figcaption{font-size:.9em;color:#555}svg text{font-size:11px;fill:#444}"
)


@dataclass(frozen=True)
class WindowPoint:
    """One monitor run, as drawn across windows."""

    run_at: str
    drift_score: float | None
    drift_threshold: float | None
    realized_auc: float | None
    estimated_auc: float | None
    champion_auc: float | None


def window_point(report: dict[str, Any]) -> WindowPoint:
    """The numbers of one report's JSON that the history charts draw. The estimate is the
    current window's label-free ROC AUC (``evidence.estimate.metrics.roc_auc.value``, CBPE),
    None when the run made none (no estimator, a regression model, estimates off)."""
    drift, perf = report.get("drift") or {}, report.get("performance") or {}
    estimate = ((report.get("evidence") or {}).get("estimate") or {}).get("metrics") or {}
    return WindowPoint(
        run_at=str(report.get("run_at", "")), drift_score=drift.get("score"),
        drift_threshold=drift.get("threshold"), realized_auc=perf.get("auc"),
        estimated_auc=(estimate.get("roc_auc") or {}).get("value"),
        champion_auc=perf.get("champion_auc"),
    )  # fmt: skip


def recent_windows(folder: Path, limit: int = HISTORY_WINDOWS) -> list[WindowPoint]:
    """The newest ``limit`` monitor reports in ``folder`` (``<stamp>.json``), oldest first;
    an unreadable one is left out (the page is never the reason a run fails)."""
    points = []
    for path in sorted(folder.glob("*.json"))[-limit:]:
        try:
            points.append(window_point(json.loads(path.read_text())))
        except (OSError, ValueError, AttributeError):
            continue
    return points


# --- pictures -------------------------------------------------------------------------------


def _legend(items: Sequence[tuple[str, str]]) -> str:
    x, out = _PAD, []
    for label, color in items:
        out.append(
            f"<rect x='{x}' y='4' width='10' height='10' fill='{color}' fill-opacity='.6'/>"
            f"<text x='{x + 14}' y='13'>{html.escape(label)}</text>"
        )
        x += 24 + 7 * len(label)
    return "".join(out)


def _svg(body: str, title: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{_H}' "
        f"viewBox='0 0 {_W} {_H}' role='img'><title>{html.escape(title)}</title>"
        f"<line x1='{_PAD}' y1='{_H - _PAD}' x2='{_W - 8}' y2='{_H - _PAD}' stroke='#999'/>"
        f"{body}</svg>"
    )


def _cdf(quantiles: Sequence[float], edges: np.ndarray) -> np.ndarray:
    """The distribution function at ``edges`` from evenly spaced quantiles (0..1); a value that
    repeats (a discrete column) carries its whole step at that value."""
    q = np.asarray(quantiles, dtype=float)
    probs = np.linspace(0.0, 1.0, len(q))
    values = np.unique(q)
    lower = np.array([probs[q == v].min() for v in values])
    upper = np.array([probs[q == v].max() for v in values])
    xs, ys = np.repeat(values, 2), np.column_stack([lower, upper]).ravel()
    out = np.interp(edges, xs, ys, left=0.0, right=1.0)
    out[edges <= q[0]] = 0.0  # the left limit at the minimum: its mass is in the first bin
    return out


def numeric_histogram(ref_q: Sequence[float], cur_q: Sequence[float], bins: int = _BINS):
    """Common bin edges and each side's share per bin, from the two sides' quantiles."""
    lo, hi = min(ref_q[0], cur_q[0]), max(ref_q[-1], cur_q[-1])
    if not hi > lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    edges[-1] = np.nextafter(hi, np.inf)
    return edges, np.diff(_cdf(ref_q, edges)), np.diff(_cdf(cur_q, edges))


def _ticks(lo: float, hi: float) -> str:
    out = []
    for frac in (0.0, 0.5, 1.0):
        x = _PAD + frac * (_W - 8 - _PAD)
        anchor = {0.0: "start", 0.5: "middle", 1.0: "end"}[frac]
        out.append(
            f"<text x='{x:.1f}' y='{_H - _PAD + 14}' text-anchor='{anchor}'>"
            f"{lo + frac * (hi - lo):.4g}</text>"
        )
    return "".join(out)


def _bars(shares: Sequence[np.ndarray], colors: Sequence[str], top: float) -> str:
    """Overlaid (numeric) bars: one bar per bin and side, the sides drawn over each other."""
    width = (_W - 8 - _PAD) / len(shares[0])
    out = []
    for share, color in zip(shares, colors, strict=True):
        for i, s in enumerate(share):
            h = (_H - 2 * _PAD) * (s / top if top > 0 else 0)
            out.append(
                f"<rect x='{_PAD + i * width:.1f}' y='{_H - _PAD - h:.1f}' width='{width:.1f}' "
                f"height='{h:.1f}' fill='{color}' fill-opacity='.45'/>"
            )
    return "".join(out)


def distribution_svg(feature: str, ref: dict[str, Any], cur: dict[str, Any]) -> str:
    """Reference and current distributions of one column overlaid ('' without summaries)."""
    legend = _legend([("reference", REFERENCE_COLOR), ("current", CURRENT_COLOR)])
    title = f"{feature}: reference vs current"
    if ref.get("quantiles") and cur.get("quantiles"):
        edges, a, b = numeric_histogram(ref["quantiles"], cur["quantiles"])
        body = _bars([a, b], [REFERENCE_COLOR, CURRENT_COLOR], float(max(a.max(), b.max())))
        return _svg(body + _ticks(float(edges[0]), float(edges[-1])) + legend, title)
    if ref.get("top") or cur.get("top"):
        return _svg(_category_bars(ref, cur) + legend, title)
    return ""


def _category_bars(ref: dict[str, Any], cur: dict[str, Any], most: int = 8) -> str:
    values = list(dict.fromkeys([*(ref.get("top") or {}), *(cur.get("top") or {})]))[:most]
    sides = [(ref, REFERENCE_COLOR), (cur, CURRENT_COLOR)]
    shares = [[(s.get("top") or {}).get(v, 0) / max(s.get("n") or 1, 1) for v in values]
              for s, _ in sides]  # fmt: skip
    top = max((x for row in shares for x in row), default=0) or 1.0
    group = (_W - 8 - _PAD) / max(len(values), 1)
    out = []
    for i, value in enumerate(values):
        for j, (_, color) in enumerate(sides):
            h = (_H - 2 * _PAD) * shares[j][i] / top
            x = _PAD + i * group + 4 + j * (group - 8) / 2
            out.append(
                f"<rect x='{x:.1f}' y='{_H - _PAD - h:.1f}' width='{(group - 8) / 2:.1f}' "
                f"height='{h:.1f}' fill='{color}' fill-opacity='.75'/>"
            )
        out.append(
            f"<text x='{_PAD + (i + 0.5) * group:.1f}' y='{_H - _PAD + 14}' "
            f"text-anchor='middle'>{html.escape(str(value)[:14])}</text>"
        )
    return "".join(out)


def history_svg(title: str, series: Sequence[tuple[str, str, Sequence[float | None]]]) -> str:
    """Lines across windows (oldest left); a series without any value is left out."""
    drawn = [
        (label, color, vals) for label, color, vals in series if any(v is not None for v in vals)
    ]
    if not drawn:
        return ""
    values = [v for _, _, vals in drawn for v in vals if v is not None]
    lo, hi = min(values), max(values)
    lo, hi = (lo - 0.05, hi + 0.05) if hi - lo < 1e-9 else (lo, hi)
    n = max(len(vals) for _, _, vals in drawn)
    step = (_W - 8 - _PAD) / max(n - 1, 1)

    def xy(i: int, v: float) -> str:
        return f"{_PAD + i * step:.1f},{_H - _PAD - (_H - 2 * _PAD) * (v - lo) / (hi - lo):.1f}"

    out = []
    for _, color, vals in drawn:
        pts = [xy(i, v) for i, v in enumerate(vals) if v is not None]
        out.append(f"<polyline points='{' '.join(pts)}' fill='none' stroke='{color}'/>")
        out += [f"<circle cx='{p.split(',')[0]}' cy='{p.split(',')[1]}' r='2.5' fill='{color}'/>"
                for p in pts]  # fmt: skip
    axis = (
        f"<text x='2' y='{_PAD}'>{hi:.3g}</text><text x='2' y='{_H - _PAD}'>{lo:.3g}</text>"
        f"<text x='{_W - 8}' y='{_H - _PAD + 14}' text-anchor='end'>"
        f"{n} window{'s' if n != 1 else ''}, newest right</text>"
    )
    return _svg("".join(out) + axis + _legend([(lab, c) for lab, c, _ in drawn]), title)


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>" if svg else ""


def pictures_html(report: dict[str, Any], history: Sequence[WindowPoint]) -> str:
    """The page's picture sections: drifted features, score distribution, recent windows."""
    profiles = report.get("profiles") or {}
    ref, cur = profiles.get("reference", {}), profiles.get("current", {})
    drifted = [f["feature"] for f in (report.get("drift") or {}).get("features", [])
               if f.get("drifted")]  # fmt: skip
    figures = [_figure(distribution_svg(f, ref.get(f, {}), cur.get(f, {})), f) for f in drifted]
    parts = []
    if drifted:
        parts += ["<h2>Drifted features: reference vs current</h2>",
                  "<div id='drift-pictures'>" + "".join(figures) + "</div>"]  # fmt: skip
    score = distribution_svg("score", ref.get(SCORE_COLUMN, {}), cur.get(SCORE_COLUMN, {}))
    if score:
        parts += [
            "<h2>Score distribution</h2>",
            _figure(score, "model score, reference vs current"),
        ]
    pts = list(history)
    drift_chart = history_svg("drift score", [
        ("drift score", CURRENT_COLOR, [p.drift_score for p in pts]),
        ("threshold", "#999999", [p.drift_threshold for p in pts]),
    ])  # fmt: skip
    perf_chart = history_svg("performance", [
        ("realized AUC", REFERENCE_COLOR, [p.realized_auc for p in pts]),
        ("estimated AUC", "#2ca02c", [p.estimated_auc for p in pts]),
        ("champion test AUC", "#999999", [p.champion_auc for p in pts]),
    ])  # fmt: skip
    if drift_chart or perf_chart:
        parts += ["<h2>Across recent windows</h2>", _figure(drift_chart, "drift score"),
                  _figure(perf_chart, "realized and estimated performance")]  # fmt: skip
    return "".join(parts)


# --- the page --------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(headers: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{(classes or [""] * len(rows))[i]}">'
        + "".join(f"<td>{_fmt(v)}</td>" for v in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


_DRIFT_COLUMNS = {"feature": "feature", "kind": "kind", "method": "method",
                  "statistic": "statistic", "p_value": "p-value", "p_adjusted": "p (BH)",
                  "jensen_shannon": "JS", "wasserstein": "Wasserstein", "psi": "PSI",
                  "hellinger": "Hellinger", "importance": "importance"}  # fmt: skip


def _header(report: dict[str, Any]) -> list[str]:
    drift, decision = report.get("drift") or {}, report.get("decision") or {}
    window = report.get("window") or {}
    drifted = [f["feature"] for f in drift.get("features", []) if f.get("drifted")]
    return [
        f"<!doctype html><html><head><meta charset='utf-8'><title>driftloop monitor "
        f"{_fmt(report.get('run_at'))}</title><style>{_CSS}</style></head><body>",
        f"<h1>Monitor report: {_fmt(report.get('model_name'))}</h1>",
        f"<p>Champion <b>{_fmt(report.get('champion_tag'))}</b>, window "
        f"{_fmt(window.get('since'))} to {_fmt(window.get('until'))} "
        f"({_fmt(window.get('rows'))} rows).</p>",
        f"<h2>Decision: {_fmt(decision.get('action'))}</h2><p>{_fmt(decision.get('reason'))}</p>",
        f"<p>Drift score {_fmt(drift.get('score'))} (threshold "
        f"{_fmt(drift.get('threshold'))}, method: {_fmt(drift.get('mode'))}).</p>",
        "<h2>Drifted features</h2>",
        "<ul id='drifted-features'>" + "".join(f"<li>{html.escape(f)}</li>" for f in drifted)
        + "</ul>" if drifted else "<p id='drifted-features'>No feature drifted.</p>",
    ]  # fmt: skip


def render_report_html(report: dict[str, Any], history: Sequence[WindowPoint] = ()) -> str:
    """A self-contained HTML page from the monitor report's JSON (no CDN, works offline).

    ``history``: the recent windows drawn across (:func:`recent_windows`; the current one
    included). Column statistics come from the whylogs profiles (``report["profiles"]``).
    """
    drift = report.get("drift") or {}
    feats = drift.get("features", [])
    parts = [
        *_header(report),
        pictures_html(report, history),
        "<h2>Per-feature drift</h2>",
        _table([*_DRIFT_COLUMNS.values(), "drifted"],
               [[*(f.get(k) for k in _DRIFT_COLUMNS), "DRIFT" if f.get("drifted") else "ok"]
                for f in feats],
               ["drift" if f.get("drifted") else "ok" for f in feats]),
    ]  # fmt: skip
    pred = drift.get("prediction")
    if pred:
        parts += ["<h2>Prediction drift (score)</h2>", _table(list(pred), [list(pred.values())])]
    for section in ("quality", "performance", "health", "process"):
        body = report.get(section)
        if body:
            flat = {k: v for k, v in body.items() if not isinstance(v, dict | list)}
            parts += [f"<h2>{section.title()}</h2>", _table(list(flat), [list(flat.values())])]
            issues = body.get("issues") or []
            if issues:
                items = "".join(f"<li>{html.escape(str(i))}</li>" for i in issues)
                parts.append(f"<ul>{items}</ul>")
    parts += [_profiles_table(report.get("profiles") or {}), "</body></html>"]
    return "".join(parts)


def _profiles_table(profiles: dict[str, Any]) -> str:
    ref, cur = profiles.get("reference", {}), profiles.get("current", {})
    if not (ref or cur):
        return ""
    stats = ["n", "null", "mean", "stddev", "median", "min", "max"]
    rows = []
    for col in sorted(set(ref) | set(cur)):
        for side, prof in (("reference", ref), ("current", cur)):
            c = prof.get(col, {})
            top = ", ".join(f"{k}:{v}" for k, v in (c.get("top") or {}).items())
            rows.append([col, side, *[c.get(s) for s in stats], top])
    return "<h2>whylogs profiles (reference vs current)</h2>" + _table(
        ["column", "profile", *stats, "top values"], rows
    )
