"""The training report's plots, written as SVG text: heatmaps (the matrix as one small PNG with
its row labels, step axis, color scale and marks) and line charts.

A plotting library's axes cost most of a report's drawing: laying out every tick label and a
colorbar per panel took about 4 s for a small model's report and over 10 s for a ResNet50's on
this machine, and a live run draws its last report after the script ended, on the user's time.
Here the colors come from matplotlib's colormaps and the pixels are encoded by Pillow (both
fast); only the layout, a few rectangles and lines of text, is ours.
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from dataclasses import dataclass

import numpy as np

TEXT = "#808080"  # readable on light and dark backgrounds alike
FONT = 'font-family="sans-serif" fill="#808080"'
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
MAX_POINTS = 2000  # a curve's points; a longer one is averaged in bins


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float


def document(width: float, height: float, parts: list[str]) -> str:
    """An SVG document of the given size, as a `data:` URI for an <img> (no script, no fetch)."""
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">'
           + "".join(parts) + "</svg>")
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def text_width(text: str, size: float) -> float:
    """About how wide a sans-serif line is (no font metrics at hand; generous, so nothing is cut)."""
    return 0.6 * size * len(text)


def label(x: float, y: float, text: str, size: float = 9, anchor: str = "start", baseline: str = "middle") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" dominant-baseline="{baseline}" {FONT}>'
            f"{html.escape(text)}</text>")


def number(v: float) -> str:
    return f"{v:.3g}" if v != 0 else "0"


def nice_ticks(lo: float, hi: float, count: int = 6, integer: bool = False) -> list[float]:
    """Round values between lo and hi, about `count` of them (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        return []
    if hi == lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _png(rgba: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def colored(m: np.ndarray, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    """RGBA bytes of `m` in the colormap; NaN cells (not recorded) transparent."""
    import matplotlib

    span = vmax - vmin if vmax > vmin else 1.0
    with np.errstate(invalid="ignore"):
        scaled = np.clip((m - vmin) / span, 0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](np.nan_to_num(scaled), bytes=True)
    rgba[~np.isfinite(m)] = 0
    return rgba


def value_range(m: np.ndarray) -> tuple[float, float]:
    finite = m[np.isfinite(m)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo - 0.5, hi + 0.5) if hi == lo else (lo, hi)


def heatmap(box: Box, m: np.ndarray, cmap: str, vmin: float, vmax: float, title: str, row_labels: dict[int, str],
            steps: int, mark_row: int | None = None, mark_step: int | None = None) -> list[str]:
    """Rows x columns of `m` in `box` (the columns cover steps 1..`steps` evenly), its labelled rows,
    its step ticks below, a color scale to its right; the marked row framed and step (0-based) dashed, in red."""
    rows = max(m.shape[0], 1)
    row_h = box.h / rows
    parts = [label(box.x, box.y - 6, title, 10, baseline="auto"),
             f'<image x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" preserveAspectRatio="none" '
             f'style="image-rendering:pixelated" href="{_png(colored(m, cmap, vmin, vmax))}"/>',
             f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" fill="none" stroke="{TEXT}" stroke-width="0.6"/>']
    spacing = row_h * (min(np.diff(sorted(row_labels))) if len(row_labels) > 1 else 1)
    size = min(9.0, max(6.0, spacing * 0.9))
    parts += [label(box.x - 4, box.y + (r + 0.5) * row_h, text, size, "end") for r, text in row_labels.items()]
    x_at = lambda step: box.x + (step - 0.5) / max(steps, 1) * box.w  # noqa: E731 - step s (1-based) at its column's middle
    bottom = box.y + box.h
    for t in nice_ticks(1, steps, 8, integer=True):
        parts.append(f'<line x1="{x_at(t):.1f}" y1="{bottom:.1f}" x2="{x_at(t):.1f}" y2="{bottom + 3:.1f}" stroke="{TEXT}" stroke-width="0.6"/>')
        parts.append(label(x_at(t), bottom + 5, f"{t:.0f}", 8, "middle", "hanging"))
    bar = Box(box.x + box.w + 8, box.y, 10, box.h)
    scale = np.linspace(vmax, vmin, 64)[:, None]
    parts.append(f'<image x="{bar.x:.1f}" y="{bar.y:.1f}" width="{bar.w:.1f}" height="{bar.h:.1f}" preserveAspectRatio="none" '
                 f'href="{_png(colored(scale, cmap, vmin, vmax))}"/>')
    for v in (vmax, (vmin + vmax) / 2, vmin) if bar.h >= 30 else (vmax, vmin):
        y = bar.y + (vmax - v) / (vmax - vmin) * bar.h if vmax > vmin else bar.y
        parts.append(label(bar.x + bar.w + 3, y, number(v), 8))
    if mark_row is not None:
        parts.append(f'<rect x="{box.x:.1f}" y="{box.y + mark_row * row_h:.1f}" width="{box.w:.1f}" height="{row_h:.1f}" fill="none" '
                     'stroke="red" stroke-width="1.6"/>')
        if mark_step is not None:
            x = x_at(mark_step + 1)
            parts.append(f'<line x1="{x:.1f}" y1="{box.y:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="red" stroke-width="1.2" stroke-dasharray="4 3"/>')
    return parts


@dataclass(frozen=True)
class Series:
    name: str
    x: np.ndarray
    y: np.ndarray
    dashed: bool = False
    dots: bool = False


def thinned(x: np.ndarray, y: np.ndarray, most: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most `most` points: a long curve averaged in bins (what a plot of it shows anyway)."""
    width = math.ceil(len(x) / most)
    if width <= 1:
        return x, y
    pad = (-len(x)) % width
    xs = np.concatenate([x.astype(float), np.full(pad, np.nan)]).reshape(-1, width)
    ys = np.concatenate([y.astype(float), np.full(pad, np.nan)]).reshape(-1, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN bin stays NaN
        return np.nanmean(xs, axis=1), np.nanmean(ys, axis=1)


def line_chart(box: Box, series: list[Series], title: str, x_label: str, log_y: bool = False, empty: str = "") -> list[str]:
    """Curves in `box` with their axes (integer x ticks), a legend when there are several, `empty`
    centered when none has a finite point. Non-finite points break a curve."""
    parts = [label(box.x + box.w / 2, box.y - 6, title, 10, "middle", "auto"),
             f'<path d="M{box.x:.1f},{box.y:.1f} V{box.y + box.h:.1f} H{box.x + box.w:.1f}" fill="none" stroke="{TEXT}" stroke-width="0.8"/>',
             label(box.x + box.w / 2, box.y + box.h + 18, x_label, 9, "middle", "hanging")]
    shown = []
    for s in series:
        y = s.y.astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log10(np.where(y > 0, y, np.nan)) if log_y else y
        y = np.where(np.isfinite(y), y, np.nan)
        if np.isfinite(y).any():
            shown.append((s, *thinned(s.x, y)))
    if not shown:
        if empty:
            parts.append(label(box.x + box.w / 2, box.y + box.h / 2, empty, 10, "middle"))
        return parts
    x_lo = min(float(np.nanmin(x)) for _, x, _ in shown)
    x_hi = max(float(np.nanmax(x)) for _, x, _ in shown)
    y_lo = min(float(np.nanmin(y)) for _, _, y in shown)
    y_hi = max(float(np.nanmax(y)) for _, _, y in shown)
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    pad = 0.05 * (y_hi - y_lo)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x_span = x_hi - x_lo or 1.0
    px = lambda v: box.x + (v - x_lo) / x_span * box.w  # noqa: E731
    py = lambda v: box.y + box.h - (v - y_lo) / (y_hi - y_lo) * box.h  # noqa: E731
    for t in nice_ticks(x_lo, x_hi, 8, integer=True):
        parts.append(f'<line x1="{px(t):.1f}" y1="{box.y + box.h:.1f}" x2="{px(t):.1f}" y2="{box.y + box.h + 3:.1f}" stroke="{TEXT}" stroke-width="0.6"/>')
        parts.append(label(px(t), box.y + box.h + 5, f"{t:.0f}", 8, "middle", "hanging"))
    if not log_y:
        y_ticks = [(t, t) for t in nice_ticks(y_lo, y_hi, 5)]
    elif y_hi - y_lo >= 2:  # decades, every few of them when the curve spans many (a diverging loss)
        decades = range(math.ceil(y_lo), math.floor(y_hi) + 1)
        y_ticks = [(float(k), 10.0 ** k) for k in decades[::max(1, math.ceil(len(decades) / 6))]]
    else:  # within a decade or two: round values, placed on the log scale
        y_ticks = [(math.log10(v), v) for v in nice_ticks(10 ** y_lo, 10 ** y_hi, 5) if v > 0]
    for t, value in y_ticks:
        parts.append(f'<line x1="{box.x - 3:.1f}" y1="{py(t):.1f}" x2="{box.x:.1f}" y2="{py(t):.1f}" stroke="{TEXT}" stroke-width="0.6"/>')
        parts.append(label(box.x - 5, py(t), number(value), 8, "end"))
    for i, (s, x, y) in enumerate(shown):
        color = PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        for run in _finite_runs(x, y):
            points = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in run)
            parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.2"{dash}/>')
            if (s.dots and len(x) <= 200) or len(run) == 1:
                parts += [f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2" fill="{color}"/>' for a, b in run]
    if len(shown) > 1:
        for i, (s, _, _) in enumerate(shown):
            y = box.y + 8 + 12 * i
            x = box.x + box.w - 8 - text_width(s.name, 8) - 22
            color = PALETTE[i % len(PALETTE)]
            dash = ' stroke-dasharray="5 3"' if s.dashed else ""
            parts.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 16:.1f}" y2="{y:.1f}" stroke="{color}" stroke-width="1.2"{dash}/>')
            parts.append(label(x + 20, y, s.name, 8))
    return parts


def _finite_runs(x: np.ndarray, y: np.ndarray) -> list[list[tuple[float, float]]]:
    """The stretches of consecutive finite points (a NaN loss breaks the curve where it happened)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for a, b in zip(x.tolist(), y.tolist()):
        if math.isfinite(a) and math.isfinite(b):
            runs[-1].append((a, b))
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if r]
