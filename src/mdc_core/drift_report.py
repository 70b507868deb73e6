"""The drift report: one self-contained HTML file (inline CSS and SVG, no script, no network) with
the drift magnitude over time, the top features, each feature's score per window, and each
feature's distribution in the baseline against its most-drifted window."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mdc_core.drift import DriftResult

WIDTH, HEIGHT, PAD = 720, 240, 44
BASE_COLOUR, WINDOW_COLOUR, LINE_COLOUR = "#9aa5b1", "#d9480f", "#1c7ed6"

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:960px;color:#212529}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}h3{font-size:15px;margin:18px 0 4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #dee2e6;padding:3px 8px;text-align:right}
th{background:#f1f3f5}td:first-child,th:first-child{text-align:left}
.meta td{text-align:left}.hot{background:#ffe8cc}svg{display:block;margin:6px 0}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
"""


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return escape(str(value))


def _magnitude_chart(result: DriftResult, threshold: float | None) -> str:
    values = result.magnitudes
    n = len(values)
    top = max([v for v in values if v is not None] + [threshold or 0.0, 0.05])
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def x(i: int) -> float:
        return PAD + (plot_w * (i + 0.5) / max(n, 1))

    def y(v: float) -> float:
        return PAD + plot_h * (1 - v / top)

    parts = [
        f'<svg id="magnitude-chart" class="plot" role="img" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        "<title>Drift magnitude per window</title>",
        f'<line x1="{PAD}" y1="{PAD + plot_h}" x2="{PAD + plot_w}" y2="{PAD + plot_h}" stroke="#868e96"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{PAD + plot_h}" stroke="#868e96"/>',
    ]
    for k in range(5):
        tick = top * k / 4
        parts.append(f'<text x="{PAD - 6}" y="{y(tick) + 4:.1f}" font-size="10" text-anchor="end">{tick:.2f}</text>')
    if threshold is not None:
        parts.append(
            f'<line class="threshold" x1="{PAD}" y1="{y(threshold):.1f}" x2="{PAD + plot_w}" y2="{y(threshold):.1f}" '
            'stroke="#e03131" stroke-dasharray="4 3"/>'
        )
    points = [(x(i), y(v)) for i, v in enumerate(values) if v is not None]
    if len(points) > 1:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{LINE_COLOUR}" stroke-width="2"/>')
    step = max(1, n // 8)
    for i, (w, v) in enumerate(zip(result.windows, values)):
        if v is not None:
            label = escape(f"{w['start'][:16]}: {v:.4f}")
            parts.append(
                f'<circle class="magnitude-point" cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5" fill="{LINE_COLOUR}">'
                f"<title>{label}</title></circle>"
            )
        if i % step == 0:
            parts.append(
                f'<text x="{x(i):.1f}" y="{PAD + plot_h + 16}" font-size="10" text-anchor="middle">'
                f"{escape(w['start'][:10] if len(w['start']) > 10 else w['start'])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _distribution_chart(name: str, kind: str, hist: dict[str, Any], index: int) -> str:
    base, current, edges = hist["baseline"], hist["current"], hist["edges"]
    n = max(len(base), len(current))
    if n == 0:
        return "<p>No rows to plot.</p>"
    widths = [1.0] * n
    if kind == "numeric" and len(edges) == n + 1:
        widths = [max(edges[i + 1] - edges[i], 1e-12) for i in range(n)]
    dens_b = [p / w for p, w in zip(base, widths)] if base else []
    dens_c = [p / w for p, w in zip(current, widths)] if current else []
    top = max(dens_b + dens_c + [1e-12])
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    slot = plot_w / n
    parts = [
        f'<svg id="dist-{index}" class="plot distribution" data-feature="{escape(name)}" role="img" '
        f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(name)}: baseline against window {escape(str(hist['window']))}</title>",
        f'<line x1="{PAD}" y1="{PAD + plot_h}" x2="{PAD + plot_w}" y2="{PAD + plot_h}" stroke="#868e96"/>',
    ]
    for series, colour, offset, cls in (
        (dens_b, BASE_COLOUR, 0.1, "bar-baseline"),
        (dens_c, WINDOW_COLOUR, 0.5, "bar-window"),
    ):
        for i, d in enumerate(series):
            h = plot_h * d / top
            parts.append(
                f'<rect class="{cls}" x="{PAD + slot * (i + offset):.1f}" y="{PAD + plot_h - h:.1f}" '
                f'width="{slot * 0.4:.1f}" height="{h:.1f}" fill="{colour}"/>'
            )
    labels = edges if kind == "categorical" else [f"{e:.3g}" for e in edges]
    step = max(1, len(labels) // 10)
    for i, label in enumerate(labels):
        if i % step:
            continue
        at = PAD + slot * (i + 0.5) if kind == "categorical" else PAD + slot * i
        parts.append(
            f'<text x="{at:.1f}" y="{PAD + plot_h + 16}" font-size="10" text-anchor="middle">'
            f"{escape(str(label))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render(result: DriftResult, threshold: float | None = None) -> str:
    """The report as one HTML document."""
    data = result.as_dict()
    top = result.top_features(len(data["features"]))
    meta_rows = [
        ("storage", data["url"]),
        ("model / version", f"{data['model'] or 'any'} / {data['version'] or 'any'}"),
        ("designation", data["designation"]),
        ("baseline", f"{data['baseline']['source']} ({data['baseline']['rows']} rows)"),
        ("windows", f"{len(data['windows'])} of {data['window']}, {data['start']} to {data['end']}"),
        ("engine", data["engine"]),
        ("largest magnitude", _fmt(data["summary"]["max_magnitude"])),
    ]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Data drift: {escape(str(data['model']))}</title><style>{CSS}</style></head><body>",
        f"<h1>Data drift — {escape(str(data['model']))} {escape(str(data['designation']))}</h1>",
        '<table class="meta">' + "".join(f"<tr><th>{k}</th><td>{escape(str(v))}</td></tr>" for k, v in meta_rows),
        "</table>",
        "<h2>Drift magnitude over time</h2>",
        "<p>A window's magnitude is its largest feature score (KS statistic, Jensen–Shannon distance, or the "
        "change in missing rate).</p>",
        _magnitude_chart(result, threshold),
        '<h2>Top features</h2><ol id="top-features">',
    ]
    best = {}
    for name in top:
        scores = [(w["features"][name]["score"], w["start"]) for w in data["windows"]]
        best[name] = max((s for s in scores if s[0] is not None), default=(None, None))
    for name in top[:10]:
        out.append(f'<li class="top-feature" data-feature="{escape(name)}">{escape(name)}: {_fmt(best[name][0])}</li>')
    out.append("</ol>")
    out.append('<h2>Score per window</h2><table id="scores"><tr><th>window</th><th>rows</th><th>magnitude</th>')
    out.extend(f"<th>{escape(n)}</th>" for n in top)
    out.append("</tr>")
    for w in data["windows"]:
        cells = "".join(
            f"<td{' class=hot' if (score or 0) >= 0.1 else ''}>{_fmt(score, 3)}</td>"
            for score in (w["features"][n]["score"] for n in top)
        )
        out.append(
            f"<tr><td>{escape(w['start'])}</td><td>{w['rows']}</td><td>{_fmt(w['magnitude'], 3)}</td>{cells}</tr>"
        )
    out.append("</table>")
    if any(w.get("labels") for w in data["windows"]):
        out.append('<h2>Quality from labels</h2><table id="labels"><tr><th>window</th><th>labelled</th>')
        out.append("<th>accuracy</th><th>MAE</th><th>RMSE</th></tr>")
        for w in data["windows"]:
            q = w.get("labels") or {}
            cells = "".join(f"<td>{_fmt(q.get(k))}</td>" for k in ("labelled", "accuracy", "mae", "rmse"))
            out.append(f"<tr><td>{escape(w['start'])}</td>{cells}</tr>")
        out.append("</table>")
    out.append("<h2>Features</h2>")
    kinds = {f["name"]: f["kind"] for f in data["features"]}
    for i, name in enumerate(top + [n for n in kinds if n not in top]):
        hist = data["histograms"][name]
        window = next((w for w in data["windows"] if w["start"] == hist["window"]), None)
        out.append(f'<section class="feature" data-feature="{escape(name)}"><h3>{escape(name)} ({kinds[name]})</h3>')
        out.append(
            f'<p class="legend"><span style="background:{BASE_COLOUR}"></span>baseline'
            f'<span style="background:{WINDOW_COLOUR}"></span>window {escape(str(hist["window"]))}</p>'
        )
        out.append(_distribution_chart(name, kinds[name], hist, i))
        if kinds[name] == "numeric":
            out.append(
                '<p class="note">One slot per bin between the baseline\'s 5% quantiles (labels: bin edges); '
                "bar height is density (share of rows / bin width).</p>"
            )
        if window is not None:
            metrics = window["features"][name]
            keys = [k for k in metrics if k not in ("kind",)]
            rows = "".join(f"<tr><th>{escape(k)}</th><td>{_fmt(metrics[k])}</td></tr>" for k in keys)
            out.append(f'<table class="metrics">{rows}</table>')
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)
