"""Server-side inline SVG bar charts (no JavaScript, no external library).

Owns ``bar_chart``: a list of (label, count) pairs becomes an accessible <svg> with one
horizontal bar per pair. Labels are escaped. Must not import flask, twisted or the store.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

ROW_HEIGHT = 22
LABEL_WIDTH = 110
COUNT_WIDTH = 50
MAX_BARS = 60


def bar_chart(pairs: Sequence[tuple[str, int]], title: str, width: int = 600) -> Markup:
    """An <svg> bar chart of ``pairs`` (at most 60 bars; the rest are summed as 'others')."""
    rows = list(pairs)
    if len(rows) > MAX_BARS:
        rows = rows[: MAX_BARS - 1] + [("others", sum(c for _, c in rows[MAX_BARS - 1 :]))]
    height = max(1, len(rows)) * ROW_HEIGHT + 4
    top = max((count for _, count in rows), default=0) or 1
    span = width - LABEL_WIDTH - COUNT_WIDTH
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    if not rows:
        parts.append(f'<text x="4" y="{ROW_HEIGHT - 6}" class="chart-label">no calls</text>')
    for index, (label, count) in enumerate(rows):
        y = index * ROW_HEIGHT + 2
        bar = max(1, round(span * count / top)) if count else 0
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end" '
            f'class="chart-label">{escape(str(label)[:16])}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{bar}" height="{ROW_HEIGHT - 6}" '
            f'class="chart-bar"><title>{escape(str(label))}: {int(count)}</title></rect>'
            f'<text x="{LABEL_WIDTH + bar + 4}" y="{y + 15}" class="chart-count">{int(count)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
