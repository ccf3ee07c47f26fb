"""Leads per day by category as an SVG bar chart, rendered on the server (no chart library).

Every value that reaches the SVG is a number or an escaped label, so lead data never becomes
markup. Bars are stacked by category in a fixed order with fixed colours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from html import escape

COLORS = {"sales": "#2563eb", "support": "#d97706", "info": "#059669", "spam": "#9ca3af"}
ORDER = ("sales", "support", "info", "spam")


def bars_svg(days: Sequence[date], counts: Mapping[date, Mapping[str, int]], labels: Mapping[str, str],
             title: str, width: int = 640, height: int = 200) -> str:
    """Stacked bars, one per day, with a legend; ``title`` is the accessible name."""
    pad_l, pad_b, pad_t = 32, 22, 8
    plot_w, plot_h = width - pad_l - 4, height - pad_b - pad_t
    totals = [sum(counts.get(d, {}).values()) for d in days]
    top = max([*totals, 1])
    step = plot_w / max(len(days), 1)
    bar_w = max(step * 0.7, 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height + 24}" role="img" '
        f'aria-label="{escape(title, quote=True)}" class="chart"><title>{escape(title)}</title>',
        f'<text x="2" y="{pad_t + 10}" font-size="11">{top}</text>',
        f'<text x="2" y="{pad_t + plot_h}" font-size="11">0</text>',
        f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{width - 4}" y2="{pad_t + plot_h}" stroke="#d1d5db"/>',
    ]
    for i, d in enumerate(days):
        x = pad_l + i * step + (step - bar_w) / 2
        y = float(pad_t + plot_h)
        for cat in ORDER:
            n = counts.get(d, {}).get(cat, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                         f'fill="{COLORS[cat]}"><title>{d.isoformat()}: {n} '
                         f'{escape(labels.get(cat, cat))}</title></rect>')
        if (len(days) - 1 - i) % 7 == 0:  # every week back from today, so the last label is today
            last = i == len(days) - 1  # today's label ends at the right edge instead of running past it
            lx_ = width - 4 if last else x + bar_w / 2
            parts.append(f'<text x="{lx_:.1f}" y="{height - 6}" font-size="10" '
                         f'text-anchor="{"end" if last else "middle"}">{d.strftime("%d/%m")}</text>')
    lx = float(pad_l)
    for cat in ORDER:
        parts.append(f'<rect x="{lx}" y="{height + 8}" width="10" height="10" fill="{COLORS[cat]}"/>'
                     f'<text x="{lx + 14}" y="{height + 17}" font-size="11">{escape(labels.get(cat, cat))}</text>')
        lx += 24 + 7 * len(labels.get(cat, cat))
    parts.append("</svg>")
    return "".join(parts)
