"""The training report: one self-contained HTML page per analysis, for people who would
rather look at the evidence than read it.

Learning curves, then one heatmap per recorded statistic with the layers in model order
(rows) over the training steps (columns, binned so a long run stays readable), the first
faulty layer and step marked, then each finding with its source lines and its fixes.
Plots are drawn by matplotlib as SVG and embedded as `data:` images, so the page needs no
network and a strict content security policy (no script; one nonce'd style sheet) holds
in a browser and in the editor's webview alike. The page takes the editor's colors when it
has them (VS Code's CSS variables) and a neutral palette otherwise.
"""

from __future__ import annotations

import base64
import html
import io
import os
import secrets
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from .report import FileReport
from .findings import LocatedFinding
from .trace import Trace
from .vocab import is_serious, rank

# pyplot keeps global state: a report drawn while `warm` runs in another thread waits for it.
_DRAWING = threading.Lock()
MAX_COLUMNS = 160  # steps are averaged into at most this many bins per heatmap
_TEXT = "#808080"  # readable on light and dark backgrounds alike


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
    with _DRAWING:
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
def _figure_uri(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    # Laid out by the caller (tight_layout): a "tight" bounding box here would draw the figure twice.
    fig.savefig(buf, format="svg", transparent=True)
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def warm() -> None:
    """Load matplotlib and its fonts before a report is drawn: a live run does this while the
    script trains, so its last report, drawn after the script ended, does not pay for them."""
    with _DRAWING:
        fig = _pyplot().figure(figsize=(1, 1))
        fig.text(0.5, 0.5, "0")
        _figure_uri(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "text.color": _TEXT, "axes.labelcolor": _TEXT,
                         "xtick.color": _TEXT, "ytick.color": _TEXT, "axes.edgecolor": _TEXT, "axes.titlecolor": _TEXT})
    return plt


def _curves(trace: Trace) -> str:
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    loss = trace.series("loss", "loss")
    names = sorted({k for e in trace.epochs for k in e.logs})
    fig, axes = plt.subplots(1, 2, figsize=(10, 2.6))
    ax = axes[0]
    if np.isfinite(loss).any():
        ax.plot(np.arange(1, len(loss) + 1), loss, lw=1, color="#1f77b4")
        ax.set_yscale("log" if np.nanmin(np.where(np.isfinite(loss), loss, np.nan)) > 0 else "linear")
    ax.set_title("loss per step")
    ax.set_xlabel("step")
    ax = axes[1]
    epochs = np.arange(1, len(trace.epochs) + 1)
    for n in names:
        values = trace.epoch_series(n)
        if np.isfinite(values).any():
            ax.plot(epochs, values, marker="o", ms=3, lw=1, label=n, ls="--" if n.startswith("val_") else "-")
    ax.set_title("per epoch")
    ax.set_xlabel("epoch")
    for a in axes:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    if names:
        ax.legend(fontsize=7, frameon=False)
    else:
        ax.text(0.5, 0.5, "no epoch finished", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    # Fixed margins, not tight_layout: measuring the tick labels took half of this figure's drawing.
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.17, top=0.9, wspace=0.18)
    return f'<img class="plot" alt="learning curves" src="{_figure_uri(fig)}">'


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
    plt = _pyplot()
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import MaxNLocator

    names = [f"{i} {trace.layers[i].name}" for i in layers]
    # A deep model's rows are labelled every few layers: each label costs drawing time (the report is
    # redrawn while a run goes on), and a hundred labels a panel are unreadable anyway.
    label_every = max(1, -(-len(layers) // MAX_LABELS))
    panels = [(p, *binned(layer_matrix(trace, p, layers))) for p in PANELS]
    panels = [(p, m, w) for p, m, w in panels if np.isfinite(m).any()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 0.5 + len(panels) * (0.35 + 0.22 * min(len(layers), 2 * MAX_LABELS))), squeeze=False)
    for ax, (panel, m, width) in zip(axes[:, 0], panels):
        shown = np.ma.masked_invalid(m)
        im = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap=panel.cmap,
                       **({"vmin": 0.0, "vmax": 1.0} if panel.fraction else {}), extent=(0.5, m.shape[1] * width + 0.5, len(layers) - 0.5, -0.5))
        ax.set_yticks(range(0, len(layers), label_every), names[::label_every], fontsize=7)
        ax.set_title(panel.title + (f" — {width} steps per column" if width > 1 else ""), loc="left", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01)
        if mark is not None and mark.layer in layers:
            row = layers.index(mark.layer)
            ax.add_patch(Rectangle((0.5, row - 0.5), m.shape[1] * width, 1, fill=False, ec="red", lw=1.6))
            if mark.step is not None:
                ax.axvline(mark.step + 1, color="red", lw=1.2, ls="--")
    for ax in axes[:, 0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("training step")
    # Margins from the longest layer name, not tight_layout: measuring every tick label took most
    # of the report's drawing time on deep models (the report is redrawn while a run goes on).
    height = fig.get_figheight()
    left = min(0.45, (0.25 + 0.055 * max(len(n) for n in names)) / fig.get_figwidth())
    panel_height = (height - 0.75) / len(panels)  # inches, with the room between panels
    fig.subplots_adjust(left=left, right=0.92, top=1 - 0.3 / height, bottom=0.45 / height, hspace=0.6 / max(panel_height - 0.6, 0.2))
    return f'<img class="plot" alt="per-layer statistics over steps" src="{_figure_uri(fig)}">'


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
