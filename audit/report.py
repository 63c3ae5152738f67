"""report.json (machine-readable) and a self-contained report.html (inline CSS, charts as base64 PNGs drawn
with matplotlib's Agg backend, a picture of each finding inline: the flagged area, pixelated, for anonymization
and residual findings; the mask's box or the published image for the others (``audit.illustrate``), "no image"
where there is none). Nothing is fetched when the page is opened."""
from __future__ import annotations

import base64
import html
import io
import json
import os
from collections import Counter
from typing import Any, Sequence

from veilset.audit import findings as F
from veilset.audit.illustrate import NO_IMAGE
from veilset.audit.runner import AuditReport, mask_emails
from veilset.release.canonical import dumps_json
from veilset.release.storage import atomic_write

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
MAX_FINDINGS_SHOWN = 500  # per check in the HTML; report.json always has all of them


def report_dict(report: AuditReport) -> dict[str, Any]:
    m = report.manifest
    out = {
        "release_dir": os.path.abspath(report.release_dir),
        "passed": report.passed,
        "release": {k: m.get(k) for k in ("release", "created", "num_shards", "formats", "counts",
                                         "rejects_by_reason", "models")},
        "takedown_log": mask_emails([{k: v for k, v in e.items() if k != "shards"} for e in m.get("log", [])]),
        "ledger_history": list(report.ledger_history),
        "checks": [r.to_dict() for r in report.results],
        "calibration": calibration(report),
    }
    for check, result in zip(out["checks"], report.results):  # thumbnails ride along, base64
        for fd, finding in zip(check["findings"], result.findings):
            if finding.thumbnail_png is not None:
                fd["thumbnail_png_base64"] = base64.b64encode(finding.thumbnail_png).decode()
            else:
                fd["thumbnail"] = NO_IMAGE
    return out


def calibration(report: AuditReport) -> dict[str, Any] | None:
    """The thresholds the identity checks used and the measurements behind them (the checks' stats carry them)."""
    return next((r.stats["calibration"] for r in report.results if isinstance(r.stats.get("calibration"), dict)),
                None)


def write_report(report: AuditReport, out_dir: str) -> tuple[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    json_path, html_path = os.path.join(out_dir, REPORT_JSON), os.path.join(out_dir, REPORT_HTML)
    atomic_write(json_path, dumps_json(report_dict(report)))
    atomic_write(html_path, render_html(report).encode("utf-8"))
    return json_path, html_path


# ---------------------------------------------------------------------------------------------- charts
def _figure_png(draw: Any, width: float = 5.0, height: float = 2.8) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    draw(ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


def _counts_chart(report: AuditReport) -> str:
    m = report.manifest
    counts = {k: v for k, v in (m.get("counts") or {}).items() if k != "input"}
    reasons = m.get("rejects_by_reason") or {}
    labels = [f"{k}" for k in counts] + [f"rejected {r}" for r in sorted(reasons)]
    values = [counts[k] for k in counts] + [reasons[r] for r in sorted(reasons)]

    def draw(ax: Any) -> None:
        ax.barh(range(len(values)), values, color=["#3a7" if lab == "published" else "#c84" for lab in labels])
        ax.set_yticks(range(len(values)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"images (input {m.get('counts', {}).get('input', '?')})")
        ax.set_title("Counts per stage and reason", fontsize=10)

    return _figure_png(draw, height=max(2.0, 0.35 * len(values) + 1))


def _histogram_chart(report: AuditReport) -> str:
    per_image = report.detection_stats.get("per_image", {})

    def draw(ax: Any) -> None:
        top = max((c[label] for c in per_image.values() for label in c), default=0)
        xs = list(range(top + 1))
        for offset, (label, color) in ((-0.2, ("face", "#36c")), (0.2, ("license_plate", "#c63"))):
            counts = Counter(c[label] for c in per_image.values())
            ax.bar([x + offset for x in xs], [counts.get(x, 0) for x in xs], width=0.4, label=label, color=color)
        ax.set_xticks(xs)
        ax.set_xlabel("detections per image")
        ax.set_ylabel("images")
        ax.legend(fontsize=8)
        ax.set_title(f"Detections per image ({len(per_image)} images)", fontsize=10)

    return _figure_png(draw)


def _scores_chart(report: AuditReport) -> str:
    scores = dict(report.detection_stats.get("scores", {}))
    residual = next((r for r in report.results if r.check == F.RESIDUAL), None)
    if residual is not None:
        scores["residual scan"] = residual.stats.get("scores", [])

    def draw(ax: Any) -> None:
        bins = [i / 20 for i in range(21)]
        for (label, vals), color in zip(scores.items(), ("#36c", "#c63", "#999")):
            ax.hist(vals, bins=bins, alpha=0.6, label=f"{label} ({len(vals)})", color=color)
        ax.set_xlabel("score")
        ax.set_ylabel("boxes")
        ax.legend(fontsize=8)
        ax.set_title("Detection score distributions", fontsize=10)

    return _figure_png(draw)


# ---------------------------------------------------------------------------------------------- html
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:6px 0} th,td{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top} th{background:#f2f2f2} td code,table.findings td{overflow-wrap:anywhere}
table.findings{table-layout:fixed;width:100%} table.findings col.thumbcol{width:112px}
.pass{background:#dfd;color:#060;font-weight:bold} .fail{background:#fdd;color:#a00;font-weight:bold}
.skipped{background:#eee;color:#555;font-weight:bold} .banner{padding:10px 14px;font-size:16px;margin:10px 0}
.charts img{margin:4px 12px 4px 0;border:1px solid #eee} code{font-size:12px} .thumb{width:96px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], css_class: str = "", cols: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    cls = f" class='{css_class}'" if css_class else ""
    return f"<table{cls}>{cols}<tr>{head}</tr>{body}</table>"


def render_html(report: AuditReport) -> str:
    m = report.manifest
    verdict = "PASS: every check passed" if report.passed else f"FAIL: {len(report.findings)} findings"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>veilset audit</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>veilset compliance audit</h1><div>release folder <code>{_e(os.path.abspath(report.release_dir))}"
             f"</code>, release {_e(m.get('release'))}, created {_e(m.get('created'))}, {_e(m.get('num_shards'))} "
             f"shards, formats {_e(', '.join(m.get('formats', [])))}</div>",
             f"<div class='banner {'pass' if report.passed else 'fail'}'>{_e(verdict)}</div>",
             "<h2>Summary</h2>",
             _table(["check", "status", "findings", "what was checked"],
                    [[_e(r.check), f"<span class='{_e(r.status)}'>{_e(r.status)}</span>", str(len(r.findings)),
                      _e(r.message)] for r in report.results]),
             _calibration_html(report),
             "<h2>Counts</h2>",
             _table(["counter", "value"], [[_e(k), _e(v)] for k, v in (m.get("counts") or {}).items()]
                    + [[_e(f"rejected {k}"), _e(v)] for k, v in sorted((m.get("rejects_by_reason") or {}).items())]),
             "<div class='charts'>"]
    for title, chart in (("counts per stage and reason", _counts_chart(report)),
                         ("detections per image", _histogram_chart(report)),
                         ("score distributions", _scores_chart(report))):
        parts.append(f"<img alt='{_e(title)}' src='data:image/png;base64,{chart}'>")
    parts.append("</div><h2>Takedown history</h2>")
    log = m.get("log", [])
    parts.append(_table(["release", "time", "request", "removed images"],
                        [[_e(e.get("release")), _e(e.get("time")), _e(mask_emails(str(e.get("request", "")))),
                          _e(len(e.get("removed", [])))] for e in log]) if log else "<p>No takedowns applied to "
                                                                                    "this release.</p>")
    if report.ledger_history:
        parts.append("<p>Ledger history (oldest first; requester addresses masked):</p>")
        parts.append(_table(["#", "time", "request", "event", "state", "detail"],
                            [[_e(h.get("seq")), _e(h.get("time")), _e(h.get("request_id")), _e(h.get("event")),
                              _e(f"{h.get('from_state') or ''} → {h.get('to_state') or ''}"),
                              f"<code>{_e(json.dumps(h.get('detail'), sort_keys=True)[:300])}</code>"]
                             for h in report.ledger_history]))
    else:
        parts.append("<p>No ledger given (<code>--ledger</code>): only the manifest's own log was checked.</p>")
    parts.append("<h2>Findings</h2>")
    if not report.findings:
        parts.append("<p>None.</p>")
    for result in report.results:
        if not result.findings:
            continue
        rows = []
        for f in result.findings[:MAX_FINDINGS_SHOWN]:
            thumb = (f"<img class='thumb' alt='published pixels' src='data:image/png;base64,"
                     f"{base64.b64encode(f.thumbnail_png).decode()}'>" if f.thumbnail_png else _e(NO_IMAGE))
            rows.append([f"<code>{_e(f.file or '-')}</code>", f"<code>{_e(f.image_id or '-')}</code>",
                         _e(f.message), thumb])
        parts.append(f"<h3>{_e(result.check)} ({len(result.findings)})</h3>")
        parts.append(_table(["file", "image ID", "finding", "published pixels"], rows, "findings",
                            "<col><col><col><col class='thumbcol'>"))
        if len(result.findings) > MAX_FINDINGS_SHOWN:
            parts.append(f"<p>{len(result.findings) - MAX_FINDINGS_SHOWN} more in report.json.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _calibration_html(report: AuditReport) -> str:
    cal = calibration(report)
    if not cal:
        return ""
    from veilset.audit.identifiable import calibration_line

    return f"<p class='calibration'><b>Calibration</b>: {_e(calibration_line(cal))}</p>"


def summary_text(report: AuditReport) -> str:
    lines = [f"{r.check:<16} {r.status:<7} {len(r.findings):>5} findings  {r.message}" for r in report.results]
    lines += [f.line() for f in report.findings]
    lines.append("audit PASSED" if report.passed else f"audit FAILED: {len(report.findings)} findings")
    return "\n".join(lines)

