"""A server-side SVG line chart (no JavaScript, no library, CSP-safe).

Presentation attributes (fill, stroke) rather than ``style=`` keep it
within the workspace's CSP, which refuses inline styles.
"""

from __future__ import annotations

from markupsafe import Markup, escape


def nice_ceiling(value: int) -> int:
    """The next 2, 4, 6, 8 or 10 × 10^n at or above ``value``: an even top,
    so the half-way tick is a whole number too."""
    magnitude = 1
    while True:
        for step in (2, 4, 6, 8, 10):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def line_chart(
    points: list[tuple[str, int]], *, width: int = 640, height: int = 200, title: str = ""
) -> Markup:
    """Render labelled values as an accessible SVG line with a filled area."""
    pad_l, pad_r, pad_t, pad_b = 44, 28, 14, 28
    inner_w, inner_h = width - pad_l - pad_r, height - pad_t - pad_b
    values = [v for _, v in points] or [0]
    top = nice_ceiling(max(values))
    step = inner_w / max(1, len(points) - 1)

    def xy(i: int, v: int) -> tuple[float, float]:
        return pad_l + i * step, pad_t + inner_h - (v / top) * inner_h

    coords = [xy(i, v) for i, (_, v) in enumerate(points)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    base = pad_t + inner_h
    area = f"{pad_l:.1f},{base:.1f} {line} {coords[-1][0]:.1f},{base:.1f}" if coords else ""
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
    ]
    for frac in (0, 0.5, 1):
        y = pad_t + inner_h - frac * inner_h
        parts.append(f'<line x1="{pad_l}" y1="{y:.1f}" x2="{width - pad_r}" y2="{y:.1f}" stroke="#dcdad3"/>')
        parts.append(
            f'<text x="{pad_l - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#4a4f59">'
            f"{round(top * frac)}</text>"
        )
    if coords:
        parts.append(f'<polygon points="{area}" fill="#e8461e" fill-opacity="0.12"/>')
        parts.append(f'<polyline points="{line}" fill="none" stroke="#b8310f" stroke-width="2.5"/>')
    every = max(1, len(points) // 6)
    for i, (label, value) in enumerate(points):
        x, y = coords[i]
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#b8310f"><title>{escape(label)}: {value}</title></circle>'
        )
        if i % every == 0 or i == len(points) - 1:
            parts.append(
                f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" font-size="11" fill="#4a4f59">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
