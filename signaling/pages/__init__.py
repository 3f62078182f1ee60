"""Server-rendered HTML pages: the swarm index (``GET /`` and ``GET /swarms``).

One small function per page over plain data (the rows of ``/api/swarms``); every value is
escaped. The ``swarm_accuracy`` column (the contribution board's corroborated accuracy: the
lower median of vouched peers' claims) and the ``contribution-board`` section render whatever
the row carries (``None`` shows a dash).
"""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1f2937}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #e5e7eb}
th{font-weight:600;background:#f9fafb}code{font-size:.85em}.muted{color:#6b7280}a{color:#2563eb}
"""


def _cell(value: Any, fmt: str = "{}") -> str:
    return "—" if value is None else escape(fmt.format(value))


def swarm_index(rows: list[dict[str, Any]]) -> str:
    """The index of published swarms: name, model summary, peers online, join link."""
    body = "\n".join(
        f'<tr data-swarm-id="{escape(r["swarm_id"])}">'
        f'<td>{escape(r["name"])}<br><code class="muted">{escape(r["swarm_id"])}</code></td>'
        f'<td>{_cell(r["model"]["layers"])} layers, {r["model"]["params"]:,} params'
        f'<br><span class="muted">{_cell(r["model"]["summary"])}</span></td>'
        f'<td>{_cell((r.get("dataset") or {}).get("name"))}</td>'
        f'<td class="peers">{r["peers"]}</td>'
        f'<td class="swarm-accuracy" data-hook="swarm-accuracy">{_cell(r.get("swarm_accuracy"), "{:.3f}")}</td>'
        f'<td><a href="{escape(r["join_url"])}">{escape(r["join_url"])}</a></td></tr>'
        for r in rows
    )
    empty = '<tr><td colspan="6" class="muted">No swarm is published yet: run <code>swarm publish URL</code> ' \
            'or use the <a href="/peer/publish.html">no-code publisher</a>.</td></tr>'  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Swarms on this server</title><style>{_STYLE}</style></head>
<body>
<h1>Swarms on this server</h1>
<p class="muted">Join a swarm to donate compute: open its link in a browser, or run
<code>swarm join LINK</code>. Publish your own with <code>swarm publish</code> or the
<a href="/peer/publish.html">no-code publisher</a>. Machine-readable: <a href="/api/swarms">/api/swarms</a>.</p>
<table id="swarms">
<thead><tr><th>Swarm</th><th>Model</th><th>Dataset</th><th>Peers online</th><th title="median of the accuracy claims of peers other peers vouched for">Swarm accuracy</th><th>Join link</th></tr></thead>
<tbody>
{body or empty}
</tbody></table>
<section id="contribution-board" data-hook="contribution-board"></section>
</body></html>
"""
