"""The tour's report: one self-contained, readable HTML page (no scripts, no network)."""

from __future__ import annotations

import html
import math
from typing import Any

from ..story import fmt

__all__ = ["render_report", "format_cell"]

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;padding:0 1em;
     line-height:1.55;color:#1d2330;background:#fcfcfd}
/* text reads best in a column of about 1100 px; figures may be wider (up to their own size, 1500 px at most), so
   that a wide multi-panel figure is not squeezed until its labels are a few pixels high */
body>:not(section),section>:not(figure){max-width:1100px;margin-left:auto;margin-right:auto}
section>figure{max-width:1500px}
h1{font-size:2em;margin-bottom:.2em} h2{border-bottom:2px solid #e2e6ef;padding-bottom:.2em;margin-top:2.2em}
.sub{color:#5a6478;margin-top:0} code{background:#eef1f6;padding:0 .25em;border-radius:3px}
nav ol{columns:2;list-style:none;padding-left:0} nav li{margin:.15em 0}
figure{margin:1.2em auto;text-align:center} figure img{max-width:100%;height:auto;border:1px solid #e2e6ef;
       border-radius:4px}
figcaption{color:#434b5c;font-size:.93em;margin:.3em auto 0;max-width:1100px}
.scroll{overflow-x:auto;max-width:1100px;margin:1em auto}
table{border-collapse:collapse;font-size:.88em} caption{font-weight:600;text-align:left;padding:.3em 0}
th,td{border:1px solid #d6dbe6;padding:.25em .5em;text-align:right} th{background:#eef1f6;overflow-wrap:anywhere}
@media (max-width:700px){table{font-size:.78em} th,td{padding:.2em .35em} nav ol{columns:1}}
td:first-child,th:first-child{text-align:left}
.findings{background:#f1f7ee;border-left:4px solid #6aa84f;padding:.5em 1em}
.error{background:#fbeeee;border-left:4px solid #c0392b;padding:.5em 1em}
.note{color:#5a6478;font-size:.9em}
.config{background:#fff6e0;border-left:4px solid #e0a800;padding:.4em 1em}
"""


def format_cell(v: Any) -> str:
    """A table cell as the page shows it: yes/no, integers with thousands separators, floats to 4 significant
    digits (scientific below 1e-3 and from 1e6 on, never a signed zero), None and NaN as a dash; text escaped."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        a = abs(v)
        return fmt(v, ".3e" if a != 0 and (a < 1e-3 or a >= 1e6) else ".4g")
    if v is None:
        return "—"
    return html.escape(str(v))


def _table(t) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{format_cell(v)}</td>" for v in row) + "</tr>" for row in t.rows)
    note = f'<p class="note">{html.escape(t.note)}</p>' if t.note else ""
    return (f"<div class='scroll'><table><caption>{html.escape(t.title)}</caption><tr>{head}</tr>{body}</table>"
            f"</div>{note}")


def render_report(chapters, results, failed, *, quick: bool = False, other_config: dict | None = None) -> str:
    """HTML of the whole story: each chapter's text, findings, figures and tables.

    ``other_config``: chapter key -> the configuration its results come from, for chapters not run in the one
    this page was asked for (``--only``); those chapters say so at their top.
    """
    other_config = other_config or {}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>kernelscope tour</title>",
        f"<link rel='icon' href='data:,'><style>{_CSS}</style></head><body>",
        "<h1>kernelscope</h1>",
        "<p class='sub'>From linear systems to neural networks, through kernels"
        + (" &mdash; <em>quick run</em> (small sizes)" if quick else " &mdash; full run") + ".</p>",
        # the chapter titles carry their numbers ("1. Linear systems"): the list adds none of its own
        "<nav aria-label='contents'><ol>",
    ]
    for ch in chapters:
        state = "" if ch.key in results else (" (failed)" if ch.key in failed else " (not run yet)")
        if ch.key in other_config and ch.key in results:
            state = f" (from the {html.escape(other_config[ch.key])})"
        parts.append(f"<li><a href='#{ch.key}'>{html.escape(ch.title)}</a>{state}</li>")
    parts.append("</ol></nav>")
    for ch in chapters:
        parts.append(f"<section id='{ch.key}'><h2>{html.escape(ch.title)}</h2>{ch.intro}")
        if ch.key in failed:
            parts.append(f"<p class='error'>This chapter failed: {html.escape(failed[ch.key])}</p>")
        res = results.get(ch.key)
        if res is None:
            if ch.key not in failed:
                parts.append("<p class='note'>Not run yet: <code>kernelscope tour --only "
                             f"{ch.key}{' --quick' if quick else ''}</code>.</p>")
            parts.append("</section>")
            continue
        if ch.key in other_config:
            parts.append(f"<p class='config'>The numbers and figures of this chapter come from an earlier "
                         f"<strong>{html.escape(other_config[ch.key])}</strong>, not from the configuration of "
                         f"this page; <code>kernelscope tour --only {ch.key}"
                         f"{' --quick' if quick else ''}</code> redoes it in this one.</p>")
        if res.findings:
            parts.append("<div class='findings'><strong>What the numbers show</strong><ul>"
                         + "".join(f"<li>{f}</li>" for f in res.findings) + "</ul></div>")
        for fig in res.figures:
            src = html.escape(fig.file)
            parts.append(f"<figure><img src='{src}' alt='{html.escape(fig.caption)}' loading='eager'>"
                         f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>")
        for t in res.tables:
            parts.append(_table(t))
        parts.append("</section>")
    parts.append("<p class='note'>Numbers: <a href='results.json'>results.json</a>. Made by "
                 "<code>kernelscope tour</code>.</p></body></html>")
    return "\n".join(parts)
