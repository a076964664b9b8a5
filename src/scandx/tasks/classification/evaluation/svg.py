"""Small inline-SVG charts for the HTML report (no plotting dependency, no JavaScript).

Every chart lives on the unit square (probabilities, rates), which keeps this tiny.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


@dataclass
class Series:
    x: Sequence[float | None]
    y: Sequence[float | None]
    label: str
    color: str = PALETTE[0]
    band: tuple[Sequence[float | None], Sequence[float | None]] | None = None  # lo, hi
    band_x: Sequence[float | None] | None = None  # where the band is given (default: x)
    markers: bool = False
    dashed: bool = False


def unit_chart(
    series: Sequence[Series],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: str | None = None,
    legend: str = "bottom right",
    width: int = 380,
    height: int = 340,
) -> str:
    """Line chart on [0, 1] x [0, 1]; ``diagonal`` "up" or "down" draws a reference line."""
    left, right, top, bottom = 52, 12, 30, 46
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + x * pw

    def py(y: float) -> float:
        return top + (1 - y) * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#888"/>',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-weight="bold">'
        f"{escape(title)}</text>",
    ]
    for i in range(6):
        t = i / 5
        parts.append(
            f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{top + ph}" stroke="#eee"/>'
            f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + pw}" y2="{py(t):.1f}" stroke="#eee"/>'
            f'<text x="{px(t):.1f}" y="{top + ph + 15}" text-anchor="middle">{t:.1f}</text>'
            f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{t:.1f}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">{escape(xlabel)}</text>'
        f'<text x="14" y="{top + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + ph / 2})">{escape(ylabel)}</text>'
    )
    if diagonal:
        y0, y1 = (0, 1) if diagonal == "up" else (1, 0)
        parts.append(
            f'<line x1="{px(0)}" y1="{py(y0)}" x2="{px(1)}" y2="{py(y1)}" '
            'stroke="#999" stroke-dasharray="4 4"/>'
        )
    for s in series:
        if s.band is not None:
            lo, hi = s.band
            bx = s.x if s.band_x is None else s.band_x
            upper = [(px(x), py(h)) for x, h in zip(bx, hi, strict=True) if h is not None]
            lower = [(px(x), py(v)) for x, v in zip(bx, lo, strict=True) if v is not None]
            if upper and lower:
                pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in upper + lower[::-1])
                parts.append(
                    f'<polygon points="{pts}" fill="{s.color}" fill-opacity="0.18" stroke="none"/>'
                )
        pts = [
            (px(x), py(y)) for x, y in zip(s.x, s.y, strict=True) if x is not None and y is not None
        ]
        if not pts:
            continue
        dash = ' stroke-dasharray="6 3"' if s.dashed else ""
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>'
        )
        if s.markers:
            parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{s.color}"/>' for a, b in pts]
    lx = left + 8 if legend.endswith("left") else left + pw - 160
    for i, s in enumerate(series):  # legend inside the plot, in the corner named
        if legend.startswith("bottom"):
            yy = top + ph - 10 - 16 * (len(series) - 1 - i)
        else:
            yy = top + 16 + 16 * i
        parts.append(
            f'<line x1="{lx}" y1="{yy - 4}" x2="{lx + 18}" y2="{yy - 4}" '
            f'stroke="{s.color}" stroke-width="3"/>'
            f'<text x="{lx + 24}" y="{yy}" font-size="11">{escape(s.label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
