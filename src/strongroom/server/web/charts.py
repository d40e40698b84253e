"""Charts drawn by the server as inline SVG: no script, no library.  Every data point has a
``<title>`` (its numbers on hover); the pages put the same data in a table next to each chart
for screen readers (the SVG itself is one labelled image)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from strongroom.records import dataclass

W, H = 640.0, 220.0
LEFT, RIGHT, TOP, BOTTOM = 92.0, 16.0, 16.0, 30.0


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    css: str
    """The class that colours it (app.css: ``.c-used``, ``.c-cap``...)."""
    points: Sequence[tuple[float, float]]


def _scale(lo: float, hi: float, a: float, b: float) -> Callable[[float], float]:
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def line_chart(
    label: str,
    series: Sequence[Series],
    fmt_x: Callable[[float], str],
    fmt_y: Callable[[float], str],
) -> str:
    """An SVG line chart of ``series`` (x, y) with axis labels at the ends."""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    if not xs:
        return ""
    x0, x1, y1 = min(xs), max(xs), max(ys) * 1.05 or 1.0
    sx, sy = _scale(x0, x1, LEFT, W - RIGHT), _scale(0.0, y1, H - BOTTOM, TOP)
    parts = [
        f'<line class="axis" x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end">{escape(fmt_y(y1))}</text>',
        f'<text x="{LEFT - 4}" y="{H - BOTTOM}" text-anchor="end">0</text>',
        f'<text x="{LEFT}" y="{H - 8}">{escape(fmt_x(x0))}</text>',
        f'<text x="{W - RIGHT}" y="{H - 8}" text-anchor="end">{escape(fmt_x(x1))}</text>',
    ]
    for s in series:
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s.points)
        parts.append(f'<polyline class="{s.css}" points="{coords}"/>')
        for x, y in s.points:
            tip = escape(f"{s.name}, {fmt_x(x)}: {fmt_y(y)}")
            parts.append(
                f'<circle class="{s.css}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4">'
                f"<title>{tip}</title></circle>"
            )
    legend = "".join(
        f'<li><span class="key {s.css}" aria-hidden="true"></span>{escape(s.name)}</li>'
        for s in series
    )
    return (
        f'<figure class="chart"><svg viewBox="0 0 {W:g} {H:g}" role="img" '
        f'aria-label="{escape(label)}">{"".join(parts)}</svg>'
        f'<figcaption><ul class="legend">{legend}</ul></figcaption></figure>'
    )
