"""From a detector's Target to a source range and text edits: the place comes from the
target's anchoring strategy (`anchors`), the edits from the fix's kind at that place."""

from __future__ import annotations

import dataclasses

from astroid import nodes

from . import feeds
from .anchors import (
    Anchors, DataStatement, FixSite, GuardSite, InsertKwarg, ReplaceCall, ReplaceDefault, ReplaceOptimizer, ReplaceValue,
    NAN_SAFE, function_at, name_range, params_of,
)
from .findings import (
    CallArgs, CodeTarget, Feed, FeedChange, Finding, Fix, FixSpec, FrameTarget, Guard, LayerCall, LocatedFinding, NewValue, Position, Rename,
    SetKwarg, SourceRange, SwapParams, Target, TextEdit, target_arg,
)
from .source import Source, arg_node, call_at, frame_range, insert_kwarg, keras_prefix, line_range, load_source, match_quotes, node_range, text_of
from .trace import CodeLocation, Frame, Trace

__all__ = ["Locator", "frame_range", "line_range", "load_source"]


class Locator:
    """Anchors findings of one trace in the user's source."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.anchors = Anchors(trace)

    # ------------------------------------------------------------- public
    def locate(self, finding: Finding) -> LocatedFinding:
        anchor, arg_site = self.anchors.anchor(finding.target)
        fixes = self._fixes(finding.fixes, finding.target, arg_site, finding.root_cause, anchor)
        # Alternative causes: their fixes follow, each with the place the finding moves to if it heals the symptom.
        for alt in finding.alternatives:
            alt_anchor, alt_site = self.anchors.anchor(alt.target)
            fixes += self._fixes(alt.fixes, alt.target, alt_site, alt.root_cause, alt_anchor)
        layer = None
        if finding.layer is not None and 0 <= finding.layer < len(self.trace.layers):
            l = self.trace.layers[finding.layer]
            layer = {"name": l.name, "index": l.index, "class": l.cls}
        return LocatedFinding(finding, anchor, fixes, layer)

    def _fixes(self, specs: list[FixSpec], target: Target, site: FixSite, root_cause: str | None, anchor: SourceRange) -> list[Fix]:
        fixes = []
        for spec in specs:
            if isinstance(spec.change, Feed):
                fed = self._feed_fixes(spec.title, spec.change.change)
                if not fed and spec.change.change == "labels_shift" and isinstance(site, DataStatement):
                    fed = [_shift_where_made(spec.title, site)]  # labels fed through a dataset: where they are made
                fixes += fed
                continue
            fix = self._fix(spec, target, site)
            if fix is not None and spec.also:
                fix = self._with_companions(fix, spec.also, target)
            if fix is not None:
                fixes.append(fix)
            if isinstance(site, ReplaceDefault) and site.param and isinstance(spec.change, NewValue):
                fixes.append(Fix(spec.title + " (at this call)", [insert_kwarg(site.src, site.call, site.param, spec.change.text)]))
        for fix in fixes:
            fix.root_cause, fix.anchor = root_cause, anchor
        return fixes

    def fallback(self) -> SourceRange:
        return self.anchors.fallback()

    # --------------------------------------------------------------- fixes
    def _feed_fixes(self, title: str, change: FeedChange) -> list[Fix]:
        """Data changes made wherever the model gets data (fit, validation, evaluate, predict)."""
        fit = self.trace.fit
        if fit is None or not fit.site:
            return []
        src = load_source(fit.site[0].file)
        call = call_at(src, fit.site[0]) if src else None
        found = feeds.find_feeds(src, call) if call is not None else None
        if found is None:
            return []
        if change == "scale_inputs":
            ndim = len(fit.x["shape"]) if fit.x and fit.x.get("shape") else None
            return feeds.input_scaling_fixes(found, ndim, self._first_layer_call())
        if change == "scale_targets":
            fix = feeds.target_scaling_fix(found)
        elif change == "one_hot":
            head = next((l for l in reversed(self.trace.layers) if l.is_output), None)
            width = f", num_classes={head.units}" if head and head.units else ""
            utils = keras_prefix(src) + "utils"
            fix = feeds.labels_fix(found, title, lambda t: f"{utils}.to_categorical({t}{width})")
        elif change in ("labels_shift", "labels_unit"):
            fix = feeds.label_range_fix(found, title, change.split("_", 1)[1])
        elif change == "nan_to_num":
            fix = feeds.inputs_fix(found, title, lambda t: f"np.nan_to_num({t})", imports=["import numpy as np"])
        else:
            fix = None
        return [fix] if fix is not None else []

    def _first_layer_call(self) -> tuple[Source, nodes.Call] | None:
        """The call that builds the model's first layer (where an input layer goes in front)."""
        layers = [l for l in self.trace.layers if l.cls != "InputLayer"]
        if not layers or not layers[0].site:
            return None
        frame = layers[0].site[0]
        src = load_source(frame.file)
        call = call_at(src, frame) if src else None
        return (src, call) if call is not None else None

    def _with_companions(self, fix: Fix, also: list[FixSpec], target: Target) -> Fix | None:
        """One fix made of several edits; an edit that cannot be placed voids the whole fix
        (half of a combined change leaves the script as broken as before)."""
        edits = list(fix.edits)
        for spec in also:
            t = spec.target or target
            _, site = self.anchors.anchor(t)
            part = self._fix(dataclasses.replace(spec, title=fix.title, target=None, also=[]), t, site)
            if part is None:
                return None
            for e in part.edits:
                if not any(_overlaps(e.range, x.range) for x in edits):
                    edits.append(e)
        return Fix(fix.title, edits)

    def _fix(self, spec: FixSpec, target: Target, site: FixSite) -> Fix | None:
        """The change, written at the place the target's anchoring found: each fix kind knows the
        fix sites it can be written at; elsewhere it has no fix."""
        if spec.target is not None and spec.target is not target:
            _, site = self.anchors.anchor(spec.target)
            target = spec.target
        title = spec.title
        match spec.change, site:
            case Rename(old, new), _:
                return _renamed_kwarg(title, target.frame, old, new) if isinstance(target, FrameTarget) else None
            case SwapParams(), _:
                return _swappedparams_of(title, target.code) if isinstance(target, CodeTarget) else None
            case SetKwarg(arg, value), ReplaceValue(r) if isinstance(r.node, nodes.Call):
                # e.g. from_logits= on a loss given as an object; on a string loss, no edit applies
                existing = arg_node(r.node, arg, None)
                if existing is not None:
                    return Fix(title, [TextEdit(node_range(r.src, existing), value)])
                return Fix(title, [insert_kwarg(r.src, r.node, arg, value)])
            case Guard(kind), GuardSite(src, node, func):
                new = _guarded(src, node, func, probability=kind == "probability")
                return Fix(title, [TextEdit(node_range(src, node), new)]) if new else None
            case NewValue(text), ReplaceDefault(r):
                # The class default (fixes every instance); the call-site argument comes as a second fix.
                return Fix(title + " (the layer's default)", [TextEdit(node_range(r.src, r.node), match_quotes(text_of(r.src, r.node), text))])
            case CallArgs(args), ReplaceValue(r) if isinstance(r.node, nodes.Call):
                return Fix(title, [TextEdit(node_range(r.src, r.node), f"{r.node.func.as_string()}({args})")])
            case NewValue(text), ReplaceValue(r):
                return Fix(title, [TextEdit(node_range(r.src, r.node), match_quotes(text_of(r.src, r.node), text))])
            case NewValue(text), InsertKwarg(call, src) if target_arg(target):
                return Fix(title, [insert_kwarg(src, call, target_arg(target) or "", text)])
            case NewValue(text), ReplaceOptimizer(r) if target_arg(target) == "learning_rate":
                cls = self.trace.optimizer.cls if self.trace.optimizer else "Adam"
                return Fix(title, [TextEdit(node_range(r.src, r.node), f"{keras_prefix(r.src)}optimizers.{cls}(learning_rate={text})")])
            case LayerCall(call), (ReplaceCall(r) | ReplaceOptimizer(r)) if isinstance(r.node, nodes.Call):
                func = text_of(r.src, r.node.func)
                module = func.rsplit(".", 1)[0] + "." if "." in func else keras_prefix(r.src) + "layers."
                return Fix(title, [TextEdit(node_range(r.src, r.node), module + call)])
            case NewValue(text), (ReplaceCall(r) | ReplaceOptimizer(r)):
                return Fix(title, [TextEdit(node_range(r.src, r.node), match_quotes(text_of(r.src, r.node), text))])
        return None



def _renamed_kwarg(title: str, frame: Frame | None, old: str, new: str) -> Fix | None:
    """The keyword `old` renamed to `new` in the call at the frame (a Keras 2 keyword)."""
    if frame is None:
        return None
    src = load_source(frame.file)
    if src is None or src.module is None:
        return None
    for call in src.module.nodes_of_class(nodes.Call):
        if not (call.lineno <= frame.line <= (call.end_lineno or call.lineno)):
            continue
        for kw in call.keywords or []:
            if kw.arg == old:
                line = src.lines[kw.lineno - 1]
                col = line.find(old, kw.col_offset)
                if col < 0:
                    continue
                rng = SourceRange(src.path, Position(kw.lineno, col + 1), Position(kw.lineno, col + len(old) + 1))
                return Fix(title, [TextEdit(rng, new)])
    return None


def _shift_where_made(title: str, site: DataStatement) -> Fix:
    """`name = name - name.min()` right after the statement that made the labels."""
    stmt, src = site.stmt, site.src
    indent = " " * stmt.col_offset
    end = Position(stmt.end_lineno or stmt.lineno, len(src.lines[(stmt.end_lineno or stmt.lineno) - 1]) + 1)
    return Fix(title, [TextEdit(SourceRange(src.path, end, end), f"\n{indent}{site.name} = {site.name} - {site.name}.min()")])


def _overlaps(a: SourceRange, b: SourceRange) -> bool:
    if a.file != b.file:
        return False
    a0, a1 = (a.start.line, a.start.column), (a.end.line, a.end.column)
    b0, b1 = (b.start.line, b.start.column), (b.end.line, b.end.column)
    return (a0 < b1 and b0 < a1) or (a0 == b0 and a1 == b1)


def _swappedparams_of(title: str, code: CodeLocation) -> Fix | None:
    """The function's first two parameters swapped in its signature (its body keeps its names)."""
    found = function_at(code)
    if found is None:
        return None
    src, func = found
    params = params_of(func)
    if len(params) < 2:
        return None
    a, b = params[:2]
    return Fix(title, [TextEdit(name_range(src, a), b.name), TextEdit(name_range(src, b), a.name)])


def _guarded(src: Source, node: nodes.NodeNG, func: nodes.NodeNG | None = None, probability: bool = False) -> str | None:
    """The risky operation made safe the way Keras' own losses do it.

    In a loss `f(y_true, y_pred)`, the prediction is clamped where it enters the log, not
    the log's whole argument: `log(y_pred + 1)` -> `log(maximum(y_pred, 1e-7) + 1)` (as
    `keras.losses.msle`), and a probability is clipped into [1e-7, 1 - 1e-7]
    (`probability`), so `log(1 - y_pred)` is safe too. Elsewhere: `log(x)` ->
    `log(maximum(x, 1e-7))`, `sqrt(x)` -> `sqrt(maximum(x, 0.0))`, `a / b` -> `a / (b + 1e-7)`.
    """
    if isinstance(node, nodes.Call) and isinstance(node.func, nodes.Attribute) and node.func.attrname in NAN_SAFE:
        # A reduction that NaN spoils: its NaN-ignoring twin (`np.mean` -> `np.nanmean`).
        args = text_of(src, node)[len(text_of(src, node.func)):]
        return f"{text_of(src, node.func.expr)}.{NAN_SAFE[node.func.attrname]}{args}"
    if isinstance(node, nodes.BinOp) and node.op == "/":
        left = text_of(src, node.left)
        if isinstance(node.left, (nodes.BinOp, nodes.BoolOp, nodes.Compare, nodes.IfExp, nodes.Lambda)):
            left = f"({left})"
        return f"{left} / ({text_of(src, node.right)} + 1e-7)"
    if not (isinstance(node, nodes.Call) and node.args):
        return None
    name = text_of(src, node.func)
    prefix = name.rsplit(".", 1)[0] + "." if "." in name else ""
    if prefix in ("", "math."):
        return None  # the math module has no elementwise maximum; no safe rewrite in place
    tf_like = prefix.startswith("tf.")
    maximum = "tf.maximum" if tf_like else f"{prefix}maximum"
    clip = (lambda t: f"tf.clip_by_value({t}, 1e-7, 1 - 1e-7)") if tf_like else (lambda t: f"{prefix}clip({t}, 1e-7, 1 - 1e-7)")
    floor = "0.0" if name.endswith("sqrt") and not name.endswith("rsqrt") else "1e-7"
    arg, rest = node.args[0], ", ".join(text_of(src, a) for a in node.args[1:])
    tail = f", {rest}" if rest else ""
    pred = _prediction_param(func)
    uses = [n for n in arg.nodes_of_class(nodes.Name) if n.name == pred] if pred and name.endswith("log") else []
    if uses and all(u.lineno == arg.lineno for u in uses):
        # Each use of the prediction inside the argument is made safe; the rest of it stays.
        text, col0 = text_of(src, arg), arg.col_offset
        safe = clip(pred) if probability else f"{maximum}({pred}, 1e-7)"
        for use in sorted(uses, key=lambda n: n.col_offset, reverse=True):
            start, end = use.col_offset - col0, (use.end_col_offset or use.col_offset) - col0
            text = text[:start] + safe + text[end:]
        return f"{name}({text}{tail})"
    if probability and name.endswith("log"):
        return f"{name}({clip(text_of(src, arg))}{tail})"
    return f"{name}({maximum}({text_of(src, arg)}, {floor}){tail})"


def _prediction_param(func: nodes.NodeNG | None) -> str | None:
    """The prediction argument of a loss function `(y_true, y_pred)`; None elsewhere."""
    if not isinstance(func, (nodes.FunctionDef, nodes.Lambda)) or func.args is None:
        return None
    names = [a.name for a in func.args.args or []]
    return names[1] if len(names) == 2 and names[0] != "self" else None  # a method: a layer's call()
