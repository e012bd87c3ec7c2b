"""The training report: one self-contained HTML page per analysis, for people who would
rather look at the evidence than read it.

Learning curves, then one heatmap per recorded statistic with the layers in model order
(rows) over the training steps (columns, binned so a long run stays readable), the first
faulty layer and step marked, then each finding with its source lines and its fixes.
Plots are SVG (plots_svg.py) embedded as `data:` images, so the page needs no
network and a strict content security policy (no script; one nonce'd style sheet) holds
in a browser and in the editor's webview alike. The page takes the editor's colors when it
has them (VS Code's CSS variables) and a neutral palette otherwise.
"""

from __future__ import annotations

import html
import os
import secrets
import warnings
from dataclasses import dataclass

import numpy as np

from .plots_svg import Box, Series, document, heatmap, label, line_chart, text_width, value_range
from .report import FileReport
from .findings import LocatedFinding
from .trace import Trace
from .vocab import is_serious, rank

MAX_COLUMNS = 160  # steps are averaged into at most this many bins per heatmap


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # the statistics vector ("out", "grad", ...)
    name: str  # the field in it
    log: bool = False  # shown as log10
    cmap: str = "viridis"
    fraction: bool = False  # a share in [0, 1]: the color scale is fixed, so 0 never looks like a fault


PANELS = (
    Panel("activation mean", "out", "mean"),
    Panel("activation std (log10)", "out", "std", log=True),
    Panel("dead units (fraction)", "out", "dead_units", cmap="magma", fraction=True),
    Panel("saturated |pre-activation| > 5 (fraction)", "pre", "sat5", cmap="magma", fraction=True),
    Panel("gradient norm (log10)", "grad", "norm", log=True),
    Panel("update ratio |dW|/|W| (log10)", "upd", "ratio", log=True),
    Panel("non-finite values (fraction)", "nonfinite", "any", cmap="Reds", fraction=True),
)


@dataclass(frozen=True)
class Mark:
    """Where the first fault showed: a layer row and, when known, a step column."""

    layer: int
    step: int | None
    label: str


def render(reports: list[FileReport]) -> str:
    """The whole page (several analyzed files: one section each)."""
    nonce = secrets.token_hex(16)
    body = "\n".join(_file_section(r) for r in reports)
    csp = f"default-src 'none'; img-src data:; style-src 'nonce-{nonce}'"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>DeepLocalize training report</title><style nonce=\"{nonce}\">{_CSS}</style></head>"
            f'<body><h1>DeepLocalize training report</h1>{body}</body></html>\n')


def _file_section(report: FileReport) -> str:
    name = html.escape(os.path.basename(report.path))
    serious = sum(is_serious(f.finding.severity) for f in report.findings)
    head = (f'<section class="file"><h2>{name}</h2><p class="meta">{html.escape(report.path)} · status {report.status} · '
            f"{len(report.findings)} finding(s), {serious} at warning or error · {report.duration_s:.1f} s</p>")
    traces = [t for t in (report.run.traces if report.run and report.run.traces else [report.trace]) if t is not None]
    fits = []
    for t in traces:
        if not t.steps and not t.epochs:
            continue
        found = [lf for lf in report.findings if lf.fit_index == t.fit_index]
        mark = first_fault(t, found)
        title = f"Fit {t.fit_index + 1}" if len(traces) > 1 else "Training"
        fits.append(f"<h3>{title}</h3>" + _mark_text(mark) + _curves(t) + _heatmaps(t, mark))
    findings = "".join(_finding(report, lf) for lf in report.findings) or '<p class="ok">No findings.</p>'
    return head + "".join(fits) + f"<h3>Findings</h3>{findings}</section>"


def first_fault(trace: Trace, findings: list[LocatedFinding]) -> Mark | None:
    """The most severe finding that says where its symptom first showed (a layer, maybe a step)."""
    for lf in sorted(findings, key=lambda f: rank(f.finding.severity)):
        obs = lf.finding.observed or {}
        if obs.get("layer") is None:
            continue
        layer = int(obs["layer"])
        step = None
        if "epoch" in obs and "step" in obs:
            step = next((i for i, s in enumerate(trace.steps) if s.epoch == obs["epoch"] and s.step == obs["step"]), None)
        info = trace.layer(layer)
        when = f", epoch {int(obs['epoch']) + 1}, step {obs['step']} (training step {step + 1})" if step is not None else ""
        return Mark(layer, step, f"{lf.finding.code}: layer {layer} '{info.name if info else '?'}'{when}")
    return None


def _mark_text(mark: Mark | None) -> str:
    if mark is None:
        return ""
    return f'<p class="mark">First faulty: {html.escape(mark.label)} (marked in red below).</p>'


# ----------------------------------------------------------------------------------- plots
def warm() -> None:
    """Load the colormaps and the image encoder before a report is drawn: a live run does this
    while the script trains, so its last report, drawn after the script ended, does not pay for them."""
    document(1, 1, heatmap(Box(0, 0, 1, 1), np.zeros((1, 1)), "viridis", 0.0, 1.0, "", {}, 1))


def _curves(trace: Trace) -> str:
    loss = trace.series("loss", "loss")
    finite = loss[np.isfinite(loss)]
    per_step = [Series("loss", np.arange(1, len(loss) + 1), loss)]
    epochs = np.arange(1, len(trace.epochs) + 1)
    names = sorted({k for e in trace.epochs for k in e.logs})
    per_epoch = [Series(n, epochs, trace.epoch_series(n), dashed=n.startswith("val_"), dots=True) for n in names]
    width, height, half = 1000, 250, 470
    parts = line_chart(Box(60, 24, half - 70, 180), per_step, "loss per step", "step", log_y=finite.size > 0 and finite.min() > 0)
    parts += line_chart(Box(half + 80, 24, width - half - 90, 180), per_epoch, "per epoch", "epoch", empty="no epoch finished")
    return f'<img class="plot" alt="learning curves" src="{document(width, height, parts)}">'


def layer_matrix(trace: Trace, panel: Panel, layers: list[int]) -> np.ndarray:
    """One statistic, layers x steps (NaN where not recorded)."""
    rows = []
    for i in layers:
        if panel.kind == "upd":
            row = trace.series(f"L{i}.upd", "norm") / np.maximum(trace.series(f"L{i}.w", "norm"), 1e-12)
        elif panel.kind == "nonfinite":
            parts = [trace.series(f"L{i}.{k}", "nonfinite") for k in ("out", "grad", "w")]
            row = np.fmax(np.fmax(parts[0], parts[1]), parts[2])
        elif panel.kind == "pre":
            row = trace.series(f"L{i}.pre", panel.name)
            if not np.isfinite(row).any():
                row = trace.series(f"L{i}.out", panel.name)
        else:
            row = trace.series(f"L{i}.{panel.kind}", panel.name)
        rows.append(row)
    m = np.array(rows, dtype=float) if rows else np.zeros((0, len(trace.steps)))
    if panel.log:
        with np.errstate(divide="ignore", invalid="ignore"):
            m = np.log10(np.where(m > 0, m, np.nan))
    return m


def binned(m: np.ndarray, columns: int = MAX_COLUMNS) -> tuple[np.ndarray, int]:
    """Columns averaged in bins of `width` steps so at most `columns` remain; returns (matrix, width)."""
    n = m.shape[1]
    width = max(1, int(np.ceil(n / columns)))
    if width == 1:
        return m, 1
    pad = (-n) % width
    padded = np.concatenate([m, np.full((m.shape[0], pad), np.nan)], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN bin stays NaN
        return np.nanmean(padded.reshape(m.shape[0], -1, width), axis=2), width


MAX_LABELS = 40  # layer names per heatmap panel


def _heatmaps(trace: Trace, mark: Mark | None) -> str:
    layers = [l.index for l in trace.layers if any(f"L{l.index}.{k}" in trace.steps[0].values for k in ("out", "grad"))] if trace.steps else []
    if not layers:
        return '<p class="meta">No per-layer statistics were recorded for this fit.</p>'
    names = [f"{i} {trace.layers[i].name}" for i in layers]
    # A deep model's rows are labelled every few layers: a hundred labels a panel are unreadable.
    label_every = max(1, -(-len(layers) // MAX_LABELS))
    row_labels = {r: names[r] for r in range(0, len(layers), label_every)}
    row_h = 11.0 if len(layers) <= MAX_LABELS else max(2.0, MAX_LABELS * 11.0 / len(layers))  # a panel at most 440 px high
    left = min(420.0, 12 + max(text_width(n, 9) for n in row_labels.values()))
    steps = len(trace.steps)
    mark_row = layers.index(mark.layer) if mark is not None and mark.layer in layers else None
    parts, y = [], 22.0
    for panel in PANELS:
        m, width = binned(layer_matrix(trace, panel, layers))
        if not np.isfinite(m).any():
            continue
        vmin, vmax = (0.0, 1.0) if panel.fraction else value_range(m)
        title = panel.title + (f" — {width} steps per column" if width > 1 else "")
        box = Box(left, y, 1000 - left - 70, row_h * len(layers))
        parts += heatmap(box, m, panel.cmap, vmin, vmax, title, row_labels, steps, mark_row,
                         mark.step if mark_row is not None and mark is not None else None)
        y += box.h + 42
    parts.append(label(left + (1000 - left - 70) / 2, y - 22, "training step", 9, "middle", "hanging"))
    return f'<img class="plot" alt="per-layer statistics over steps" src="{document(1000, y, parts)}">'


# -------------------------------------------------------------------------------- findings
def _finding(report: FileReport, lf: LocatedFinding) -> str:
    f = lf.finding
    at = report.place(lf.range)
    where = f"{os.path.basename(at.file)}:" + (f"cell {at.cell}:" if at.cell else "") + f"{at.start.line}:{at.start.column}"
    cause = f" ({lf.cause_label})" if lf.cause_label else ""
    fixes = "".join(f"<li>{html.escape(fix.title)}" + (f" — <em>{fix.verification.verdict}</em>" if fix.verification else "") + "</li>"
                    for fix in lf.fixes)
    return (f'<div class="finding {f.severity}"><p><span class="sev">{f.severity}</span> <code>{f.code}</code> at <code>{html.escape(where)}</code>'
            f"{html.escape(cause)}</p><p>{html.escape(lf.message)}</p>{_snippet(report, lf)}"
            + (f"<p>Fixes:</p><ul>{fixes}</ul>" if fixes else "") + "</div>")


def _snippet(report: FileReport, lf: LocatedFinding, context: int = 3) -> str:
    """The source lines around the finding, its own lines highlighted (the cell's, in a notebook)."""
    at = report.place(lf.range)
    if at.cell is not None and report.notebook is not None:
        lines = next((c.text for c in report.notebook.cells if c.index == at.cell), "").splitlines()
    elif lf.range.file == report.path and report.source:
        lines = report.source.splitlines()
    else:
        try:
            with open(lf.range.file, encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError:
            return ""
    lo, hi = max(1, at.start.line - context), min(len(lines), at.end.line + context)
    rows = []
    for n in range(lo, hi + 1):
        cls = ' class="hit"' if at.start.line <= n <= at.end.line else ""
        rows.append(f"<span{cls}><b>{n:>4}</b>  {html.escape(lines[n - 1])}</span>")
    return "<pre>" + "\n".join(rows) + "</pre>" if rows else ""


_CSS = """
body { font-family: var(--vscode-font-family, system-ui, sans-serif); font-size: 13px; margin: 16px 24px;
       color: var(--vscode-editor-foreground, #1f1f1f); background: var(--vscode-editor-background, #ffffff); }
h1 { font-size: 18px; } h2 { font-size: 16px; margin-top: 28px; } h3 { font-size: 14px; margin: 18px 0 6px; }
.meta { opacity: 0.75; } .ok { color: #2e7d32; }
.mark { color: #d32f2f; font-weight: 600; }
img.plot { max-width: 100%; display: block; margin: 6px 0 12px; }
.finding { border-left: 4px solid #9e9e9e; padding: 4px 12px; margin: 10px 0; }
.finding.error { border-color: #d32f2f; } .finding.warning { border-color: #f9a825; } .finding.information { border-color: #1976d2; }
.sev { font-weight: 700; text-transform: uppercase; font-size: 11px; }
pre { font-family: var(--vscode-editor-font-family, ui-monospace, monospace); font-size: 12px; padding: 8px;
      background: rgba(128, 128, 128, 0.12); overflow-x: auto; }
pre .hit { background: rgba(211, 47, 47, 0.22); display: inline-block; width: 100%; }
code { font-family: var(--vscode-editor-font-family, ui-monospace, monospace); }
"""
