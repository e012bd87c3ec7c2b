"""Hover text: what a layer did in the last run, and what re-training with each fix changed."""

from __future__ import annotations

import math

import numpy as np

from ..findings import LocatedFinding
from ..trace import LayerInfo, Trace

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: np.ndarray, width: int = 24, log: bool = True) -> str:
    """A small text chart; log scale by default since norms span decades."""
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return "(no data)"
    if len(v) > width:
        idx = np.linspace(0, len(v) - 1, width).round().astype(int)
        v = v[idx]
    if log:
        v = np.log10(np.maximum(np.abs(v), 1e-12))
    lo, hi = float(np.min(v)), float(np.max(v))
    if hi - lo < 1e-12:
        return BARS[3] * len(v)
    return "".join(BARS[int((x - lo) / (hi - lo) * (len(BARS) - 1))] for x in v)


def layers_at(trace: Trace, path: str, line: int) -> list[LayerInfo]:
    """Layers whose construction passes through this line (the call itself or a helper call)."""
    return [l for l in trace.layers if any(f.file == path and f.line <= line <= (f.end_line or f.line) for f in l.site)]


def _last(trace: Trace, key: str, name: str) -> float | None:
    s = trace.series(key, name)
    s = s[np.isfinite(s)]
    return float(s[-1]) if len(s) else None


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.0%}" if pct else f"{v:.3g}"


def layer_markdown(trace: Trace, layer: LayerInfo) -> str:
    i = layer.index
    act = f", activation `{layer.activation}`" if layer.activation else ""
    lines = [f"**DeepLocalize** — layer {i} `{layer.name}` ({layer.cls}{act}), last run: {len(trace.steps)} steps", ""]
    lines.append("| statistic | last value |")
    lines.append("|---|---|")
    lines.append(f"| output mean / std | {_fmt(_last(trace, f'L{i}.out', 'mean'))} / {_fmt(_last(trace, f'L{i}.out', 'std'))} |")
    if layer.activation in ("relu", "relu6"):
        lines.append(f"| dead units | {_fmt(_last(trace, f'L{i}.out', 'dead_units'), True)} |")
    if layer.activation in ("sigmoid", "tanh", "hard_sigmoid", "softsign"):
        lines.append(f"| saturated inputs (abs > 5) | {_fmt(_last(trace, f'L{i}.pre', 'sat5'), True)} |")
    nonfinite = _last(trace, f"L{i}.out", "nonfinite")
    if nonfinite:
        lines.append(f"| non-finite outputs | {_fmt(nonfinite, True)} |")
    grad = trace.series(f"L{i}.grad", "norm")
    if np.isfinite(grad).any():
        upd = trace.series(f"L{i}.upd", "norm") / np.maximum(trace.series(f"L{i}.w", "norm"), 1e-12)
        lines.append(f"| gradient norm | {_fmt(_last(trace, f'L{i}.grad', 'norm'))} |")
        lines.append(f"| update ratio abs(dW)/abs(W) | {_fmt(float(upd[np.isfinite(upd)][-1]) if np.isfinite(upd).any() else None)} |")
        lines += ["", f"gradient norm over time (log): `{sparkline(grad)}`", "", f"update ratio over time (log): `{sparkline(upd)}`"]
    return "\n".join(lines)


def verification_markdown(lf: LocatedFinding) -> str | None:
    """Before/after table of the fixes tried on a finding, for the hover on its line."""
    tried = [fix for fix in lf.fixes if fix.verification is not None]
    if not tried:
        return None
    out = [f"**DeepLocalize** — `{lf.finding.code}`: fixes tried by re-training ({lf.confirmation or 'pending'})", ""]
    for fix in tried:
        v = fix.verification
        assert v is not None
        out.append(f"*{fix.title}* — **{v.verdict}**: {v.reason} ({v.epochs} epochs, {v.steps} steps, {v.seconds:.1f} s)")
        keys = [k for k in dict.fromkeys([*v.before, *v.after]) if k not in ("epochs",)]
        if keys:
            out += ["", "| measure | before | after |", "|---|---|---|"]
            out += [f"| {k.replace('_', ' ')} | {_cell(v.before.get(k))} | {_cell(v.after.get(k))} |" for k in keys]
        out.append("")
    return "\n".join(out)


def _cell(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return _fmt(v)
    return str(v).replace("|", "\\|")
