"""The demo's report: one self-contained ``report.html`` (tables, inline SVG) and ``summary.json``.

Nothing is fetched when the page opens (no scripts, fonts or images from elsewhere), so the
file can be mailed or attached to a CI run as it is.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from edgeship.demo.story import StorySummary

_STATES = (("committed", "#2e7d32"), ("rolled_back", "#f9a825"), ("failed", "#c62828"))
_CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em}table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
.ok{color:#2e7d32;font-weight:600}.bad{color:#c62828;font-weight:600}svg{max-width:100%;height:auto}"""


def write_report(summary: StorySummary, out: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``summary.json`` into ``out``; returns their paths."""
    data = summary.to_dict()
    problems = summary.check()
    json_path = out / "summary.json"
    json_path.write_text(json.dumps({**data, "problems": problems}, indent=2, default=str))
    html_path = out / "report.html"
    html_path.write_text(render(data, problems))
    return html_path, json_path


def render(s: dict[str, Any], problems: list[str]) -> str:
    verdict = ('<p class="ok">The story ended as told.</p>' if not problems
               else "<p class='bad'>Not as told:</p><ul>" + "".join(f"<li>{escape(p)}</li>" for p in problems) + "</ul>")
    delta = s["delta"]
    parts = [
        (f"<!doctype html><html lang='en'><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
        f"<title>edgeship demo report</title><style>{_CSS}</style><body>"),
        f"<h1>edgeship demo</h1><p>{s['devices']} devices, {s['seconds']} s.</p>{verdict}",
        "<h2>Timeline</h2>", _timeline_svg(s["timeline"]),
        _table(["t (s)", "act", "what happened"], [[e["t"], e["act"], e["text"]] for e in s["timeline"]]),
        "<h2>Bytes for v2</h2>", _bars_svg([("whole files", delta.get("full_size", 0), "#90a4ae"),
                                           ("downloaded (deltas)", delta.get("bytes_downloaded", 0), "#1565c0")]),
        _table(["requests during hot swaps", "ok", "failed"], [["LLM", s["swap_requests"].get("ok", 0), s["swap_requests"].get("failed", 0)]]),
        "<h2>Health per release</h2>", _health_svg(s["health"]),
        _table(["release", *[n for n, _ in _STATES]], [[v, *[c.get(n, 0) for n, _ in _STATES]] for v, c in s["health"].items()]),
        "<h2>Rollouts</h2>",
        _table(["release", "status", "rollback", "reason"],
               [[v, r["status"], r["rollback"], r["reason"]] for v, r in s["rollouts"].items()]),
        "<h2>Devices at the end</h2>", _table(["device", "version"], sorted(s["versions"].items())),
        "<h2>Optimize</h2>", _table(["profile", "variant", "why"], [[o["profile"], o["variant"], o["reason"]] for o in s["optimize"]]),
        _table(["v1 requires", "devices presenting each profile"],
               [[", ".join(f"{k}={v}" for k, v in s["requirements"].items() if v),
                 ", ".join(f"{p}: {n}" for p, n in s["presented"].items())]]),
        "<h2>Inference and MQTT</h2>",
        f"<p>LLM: {escape(s['model'] or 'generated tiny model')}</p>",
        _table(["device", "release", "asked", "answer", "image outputs"],
               [[a["device"], a["release"], f"{a['request']}: {a['prompt']}", a["answer"], ", ".join(a["image_outputs"])] for a in s["answers"]]),
        f"<p>{s['mqtt_messages']} results received over MQTT.</p>",
        *_learning(s["learning"]),
        "<h2>Feedback and forgery</h2>",
        _table(["field", "value"], [*s["feedback"].items(), ("forged release refused", s["forged_refused"]), ("device said", s["forged_error"])]),
        "</body></html>",
    ]
    return "\n".join(parts)


def _learning(learning: dict[str, Any]) -> list[str]:
    """The federated round of `--learn`: who took part and the devices' mean loss before and after."""
    if not learning:
        return []
    return ["<h2>On-device learning</h2>",
            _table(["accepted", "rejected", "dropped", "samples", "loss before", "loss after", "used", "why"],
                   [[learning.get(k) for k in ("accepted", "rejected", "dropped", "samples", "loss_before", "loss_after", "used", "reason")]])]


def _table(head: list[str], rows: Any) -> str:
    cells = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + f"</tr>{cells}</table>"


def _timeline_svg(events: list[dict[str, Any]], width: int = 900) -> str:
    """One dot per narrated step on a time axis, one row per act."""
    acts = list(dict.fromkeys(e["act"] for e in events))
    end = max((e["t"] for e in events), default=1) or 1
    row, left = 22, 90
    marks = [f"<text x='0' y='{i * row + 15}' font-size='12'>{escape(a)}</text>" for i, a in enumerate(acts)]
    for e in events:
        x = left + (width - left - 10) * e["t"] / end
        y = acts.index(e["act"]) * row + 11
        marks.append(f"<circle cx='{x:.1f}' cy='{y}' r='5' fill='#1565c0'><title>{e['t']} s: {escape(e['text'])}</title></circle>")
    h = len(acts) * row + 20
    marks.append(f"<text x='{left}' y='{h - 4}' font-size='11'>0 s</text><text x='{width - 40}' y='{h - 4}' font-size='11'>{end:g} s</text>")
    return f"<svg viewBox='0 0 {width} {h}' role='img' aria-label='timeline'>{''.join(marks)}</svg>"


def _bars_svg(bars: list[tuple[str, int, str]], width: int = 900) -> str:
    top = max((v for _, v, _ in bars), default=1) or 1
    out = []
    for i, (label, value, color) in enumerate(bars):
        w = max(1.0, (width - 320) * value / top)
        out.append(f"<text x='0' y='{i * 30 + 18}' font-size='12'>{escape(label)}</text>"
                   f"<rect x='150' y='{i * 30 + 4}' width='{w:.1f}' height='20' fill='{color}'/>"
                   f"<text x='{156 + w:.1f}' y='{i * 30 + 18}' font-size='12'>{value:,} B</text>")
    return f"<svg viewBox='0 0 {width} {len(bars) * 30 + 6}' role='img' aria-label='bytes'>{''.join(out)}</svg>"


def _health_svg(health: dict[str, dict[str, int]], width: int = 900) -> str:
    """A stacked bar per release: devices that committed, rolled back, failed."""
    top = max((sum(c.values()) for c in health.values()), default=1) or 1
    out = []
    for i, (version, counts) in enumerate(health.items()):
        x = 80.0
        out.append(f"<text x='0' y='{i * 30 + 18}' font-size='12'>{escape(version)}</text>")
        for state, color in _STATES:
            w = (width - 100) * counts.get(state, 0) / top
            if w:
                out.append(f"<rect x='{x:.1f}' y='{i * 30 + 4}' width='{w:.1f}' height='20' fill='{color}'>"
                           f"<title>{state}: {counts[state]}</title></rect>")
            x += w
    return f"<svg viewBox='0 0 {width} {len(health) * 30 + 6}' role='img' aria-label='health'>{''.join(out)}</svg>"
