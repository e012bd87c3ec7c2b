"""From a detector's Target to a source range and text edits.

Runtime call sites say which call created a layer or optimizer (exact through
loops and helpers); the syntax tree narrows that to the token to change and
follows names back to the line that defines them (`lr = 5.0` ...
`SGD(learning_rate=lr)`), including helper-function parameters bound at the
caller's call site.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any

from astroid import nodes

from . import feeds
from .findings import Finding, Fix, FixSpec, LocatedFinding, Position, SourceRange, Target, TextEdit
from .source import (
    Source, arg_node, call_at, call_name, frame_range, insert_kwarg, keras_prefix, line_range, load_source, match_quotes, node_range, text_of,
)
from .trace import Frame, Trace


def _param_binding(func: nodes.FunctionDef, param: str, caller: nodes.Call) -> nodes.NodeNG | None:
    """The expression a caller binds to `param` of `func`, or its default."""
    names = [a.name for a in func.args.args]
    offset = 1 if names and names[0] in ("self", "cls") and isinstance(caller.func, nodes.Attribute) else 0
    for kw in caller.keywords or []:
        if kw.arg == param:
            return kw.value
    if param in names:
        idx = names.index(param) - offset
        if 0 <= idx < len(caller.args):
            return caller.args[idx]
        defaults = func.args.defaults or []
        di = names.index(param) - (len(names) - len(defaults))
        if 0 <= di < len(defaults):
            return defaults[di]
    return None


def _double_star_entry(src: Source, call: nodes.Call, name: str) -> nodes.NodeNG | None:
    """The value a `**kwargs` dict passes for `name` (`Opt(**cfg["opt_kwargs"])` with
    `cfg["opt_kwargs"] = {"learning_rate": 1.0}`): a fix edits that entry, since a second
    keyword at the call would be a TypeError."""
    for kw in call.keywords or []:
        if kw.arg is not None:
            continue
        d = _dict_literal(src, kw.value, call.lineno or 0)
        if d is None:
            continue
        for key, value in d.items:
            if isinstance(key, nodes.Const) and key.value == name:
                return value
    return None


def _dict_literal(src: Source, node: nodes.NodeNG, before_line: int) -> nodes.Dict | None:
    """A dict display that `node` names: inline, a variable, or an item assigned earlier (`cfg["k"] = {...}`)."""
    if isinstance(node, nodes.Dict):
        return node
    if src.module is None:
        return None
    text = node.as_string()
    latest: nodes.Dict | None = None
    for assign in src.module.nodes_of_class(nodes.Assign):
        if (assign.lineno or 0) >= before_line or not isinstance(assign.value, nodes.Dict):
            continue
        if any(t.as_string() == text for t in assign.targets):
            latest = assign.value
    return latest


@dataclass
class Resolved:
    """Where a value is written: the node to edit, in which source."""

    src: Source
    node: nodes.NodeNG
    via_name: str | None = None


def resolve_value(src: Source, node: nodes.NodeNG, chain: list[Frame], depth: int = 0) -> Resolved:
    """Follow a Name to the literal that defines it: an assignment, or the argument a caller passed."""
    if not isinstance(node, nodes.Name) or depth > 6:
        return Resolved(src, node)
    try:
        scope, assigns = node.lookup(node.name)
    except Exception:  # noqa: BLE001
        return Resolved(src, node)
    assigns = [a for a in assigns if a.lineno is not None]
    before = [a for a in assigns if a.lineno <= node.lineno] or assigns
    if not before:
        return Resolved(src, node)
    target = max(before, key=lambda a: a.lineno)
    parent = target.parent
    if isinstance(parent, nodes.Arguments):
        func = parent.parent
        if chain and isinstance(func, (nodes.FunctionDef, nodes.Lambda)):
            caller_frame = chain[0]
            caller_src = load_source(caller_frame.file)
            call = call_at(caller_src, caller_frame) if caller_src else None
            if call is not None and isinstance(func, nodes.FunctionDef):
                bound = _param_binding(func, node.name, call)
                if bound is not None:
                    return resolve_value(caller_src if bound.root() is caller_src.module else src, bound, chain[1:], depth + 1)
        return Resolved(src, node)
    if isinstance(parent, (nodes.Assign, nodes.AnnAssign)) and isinstance(parent.value, (nodes.Const, nodes.UnaryOp, nodes.BinOp, nodes.Call, nodes.Name)):
        if isinstance(parent, nodes.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], nodes.AssignName):
            value = parent.value
            if isinstance(value, nodes.Name):
                return resolve_value(src, value, chain, depth + 1)
            return Resolved(src, value, via_name=node.name)
    return Resolved(src, node)


# Where a fix is written, as `_anchor` found it next to the range it reports.
@dataclass
class ReplaceValue:
    """The value given for the target (followed back to where it is defined)."""

    resolved: Resolved


@dataclass
class ReplaceCall:
    """The whole call that creates the target (a layer, an optimizer)."""

    resolved: Resolved


@dataclass
class ReplaceOptimizer:
    """An optimizer given as a string (`optimizer="adam"`): replaced by a constructed one."""

    resolved: Resolved


@dataclass
class ReplaceDefault:
    """A custom layer's default for a setting the call leaves out; the call may get it too."""

    resolved: Resolved
    call: nodes.Call
    src: Source
    param: str | None


@dataclass
class InsertKwarg:
    """A call that does not set the target: the keyword goes in."""

    call: nodes.Call
    src: Source


@dataclass
class DataStatement:
    """The statement that last assigns the data passed to fit."""

    src: Source
    stmt: nodes.NodeNG
    name: str


@dataclass
class GuardSite:
    """A risky operation (log, sqrt, division) inside user code."""

    src: Source
    node: nodes.NodeNG
    func: nodes.NodeNG | None


FixSite = ReplaceValue | ReplaceCall | ReplaceOptimizer | ReplaceDefault | InsertKwarg | DataStatement | GuardSite | None


class Locator:
    """Anchors findings of one trace in the user's source."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.script = os.path.abspath(trace.script)

    # ------------------------------------------------------------- public
    def locate(self, finding: Finding) -> LocatedFinding:
        anchor, arg_site = self._anchor(finding.target)
        fixes = self._fixes(finding.fixes, finding.target, arg_site, finding.root_cause, anchor)
        # Alternative causes: their fixes follow, each with the place the finding moves to if it heals the symptom.
        for alt in finding.alternatives:
            alt_anchor, alt_site = self._anchor(alt.target)
            fixes += self._fixes(alt.fixes, alt.target, alt_site, alt.root_cause, alt_anchor)
        layer = None
        if finding.layer is not None and 0 <= finding.layer < len(self.trace.layers):
            l = self.trace.layers[finding.layer]
            layer = {"name": l.name, "index": l.index, "class": l.cls}
        return LocatedFinding(finding, anchor, fixes, layer)

    def _fixes(self, specs: list[FixSpec], target: Target, site: FixSite, root_cause: str | None, anchor: SourceRange) -> list[Fix]:
        fixes = []
        for spec in specs:
            if spec.feed:
                fixes += self._feed_fixes(spec)
                continue
            fix = self._fix(spec, target, site)
            if fix is not None and spec.also:
                fix = self._with_companions(fix, spec.also, target)
            if fix is not None:
                fixes.append(fix)
            if isinstance(site, ReplaceDefault) and site.param and spec.new_value:
                fixes.append(Fix(spec.title + " (at this call)", [insert_kwarg(site.src, site.call, site.param, spec.new_value)]))
        for fix in fixes:
            fix.root_cause, fix.anchor = root_cause, anchor
        return fixes

    # ------------------------------------------------------------ anchors
    def fallback(self) -> SourceRange:
        """Where a finding without a place of its own is reported: the fit (or compile) call."""
        for info in (self.trace.fit, self.trace.compile):
            if info is not None and info.site:
                return frame_range(info.site[0])
        return SourceRange(self.script, Position(1, 1), Position(1, 1))

    def _site_for(self, target: Target) -> list[Frame]:
        t = self.trace
        if target.kind in ("layer_arg", "layer") and target.layer is not None and 0 <= target.layer < len(t.layers):
            return t.layers[target.layer].site
        if target.kind == "optimizer_arg":
            if t.optimizer and t.optimizer.site:
                return t.optimizer.site
            return t.compile.site if t.compile else []
        if target.kind == "compile_arg":
            return t.compile.site if t.compile else []
        if target.kind in ("fit_arg", "fit_data", "nonfinite_data"):
            return t.fit.site if t.fit else []
        return []

    def _anchor(self, target: Target) -> tuple[SourceRange, FixSite]:
        """(range to report, context for fixes)."""
        if target.kind == "frame":
            return (frame_range(target.frame) if target.frame else self.fallback()), None
        if target.kind == "code":
            return self._code_anchor(target.code or {}, params=target.arg == "params")
        chain = self._site_for(target)
        if not chain:
            return self.fallback(), None
        frame = chain[0]
        src = load_source(frame.file)
        call = call_at(src, frame) if src else None
        if call is None:
            return frame_range(frame), None
        if target.kind == "layer":
            return node_range(src, call), ReplaceCall(Resolved(src, call))
        if target.kind == "optimizer_arg" and not (self.trace.optimizer and self.trace.optimizer.site):
            # Optimizer given as a string: the compile call's optimizer= value.
            value = arg_node(call, "optimizer", 0)
            if value is None:
                return node_range(src, call), None
            r = resolve_value(src, value, chain[1:])
            return node_range(r.src, r.node), ReplaceOptimizer(r)
        if target.kind == "optimizer_arg" and target.arg is None:
            return node_range(src, call), ReplaceCall(Resolved(src, call))
        if target.kind in ("fit_data", "nonfinite_data"):
            value = arg_node(call, target.arg, target.position)
            if value is None and target.position:
                # fit(dataset): the part of the tuple the dataset was sliced from.
                value = _dataset_part(arg_node(call, "x", 0), target.position)
            if value is None:
                return node_range(src, call), None
            anchor, site = self._data_anchor(src, value, call)
            if target.kind == "nonfinite_data" and isinstance(site, DataStatement):
                op = _nonfinite_producer(site.stmt)
                if op is not None:
                    return node_range(src, op), GuardSite(src, op, None)
            return anchor, site
        value = arg_node(call, target.arg, target.position)
        if value is None and target.arg:
            value = _double_star_entry(src, call, target.arg)
        if value is None and target.kind == "layer_arg" and target.arg:
            default = self._custom_default(target)
            if default is not None:
                return node_range(default[0].src, default[0].node), ReplaceDefault(default[0], call, src, default[1])
        if value is None:
            return node_range(src, call), InsertKwarg(call, src)
        resolved = resolve_value(src, value, chain[1:])
        return node_range(resolved.src, resolved.node), ReplaceValue(resolved)

    def _custom_default(self, target: Target) -> tuple[Resolved, str | None] | None:
        """A custom layer's setting that the call site leaves to a default: the default in
        its `__init__` (with the parameter's name), else the literal given to `add_weight` in `build`."""
        layer = self.trace.layer(target.layer) if target.layer is not None else None
        code = layer.init_code if layer is not None else None
        if not code or not target.arg:
            return None
        want = target.arg
        stem = "init" if want.endswith("initializer") else want
        init = _function_at(code.get("init"))
        if init is not None:
            src, func = init
            names = [a.name for a in func.args.args]
            defaults = func.args.defaults or []
            with_default = dict(zip(names[len(names) - len(defaults):], defaults))
            for name in sorted(with_default, key=lambda n: (n != want, stem not in n)):
                if (name == want or stem in name) and isinstance(with_default[name], nodes.Const) and isinstance(with_default[name].value, str):
                    return Resolved(src, with_default[name]), name
        build = _function_at(code.get("build"))
        if build is not None:
            src, func = build
            for call in _named_calls(func, ["add_weight"]):
                value = arg_node(call, "initializer", None)
                if isinstance(value, nodes.Const) and isinstance(value.value, str):
                    return Resolved(src, value), None
        return None

    def _data_anchor(self, src: Source, value: nodes.NodeNG, call: nodes.Call) -> tuple[SourceRange, FixSite]:
        """The statement that last assigns the array fed to fit (where preprocessing belongs)."""
        if isinstance(value, nodes.Subscript) and isinstance(value.slice, nodes.Const) and isinstance(value.value, nodes.Name):
            # `fit(data["x"], ...)`: the item assignment that stores the array, even inside the helper that builds the dict.
            key = value.slice.value
            stores = [a for a in src.module.nodes_of_class(nodes.Assign) if len(a.targets) == 1 and isinstance(a.targets[0], nodes.Subscript)
                      and isinstance(a.targets[0].slice, nodes.Const) and a.targets[0].slice.value == key]
            if stores:
                stmt = max(stores, key=lambda a: a.lineno)
                name = text_of(src, stmt.targets[0])
                rng = node_range(src, stmt)
                return rng, DataStatement(src, stmt, name)
        base = value
        while isinstance(base, nodes.Subscript):
            base = base.value
        if not isinstance(base, nodes.Name):
            return node_range(src, value), None
        try:
            _, assigns = base.lookup(base.name)
        except Exception:  # noqa: BLE001
            assigns = []
        before = [a for a in assigns if a.lineno is not None and a.lineno <= call.lineno]
        if not before:
            return node_range(src, value), None
        target = max(before, key=lambda a: a.lineno)
        name = base.name
        # Through train/validation splits (`y_tr = y[1000:]`, `a, b = y[i], y[j]`) back to the
        # statement that gave the array its values: where a wrong value or the scaling belongs.
        for _ in range(6):
            origin = _row_selection_of(target)
            if origin is None:
                break
            try:
                _, earlier = origin.lookup(origin.name)
            except Exception:  # noqa: BLE001
                break
            stmt_line = target.statement().lineno
            prior = [a for a in earlier if a.lineno is not None and a.lineno < stmt_line]
            if not prior:
                break
            target, name = max(prior, key=lambda a: a.lineno), origin.name
        stmt = target.statement()
        rng = node_range(src, stmt)
        return rng, DataStatement(src, stmt, name)

    def _code_anchor(self, code: dict[str, Any], params: bool = False) -> tuple[SourceRange, FixSite]:
        """The risky operation inside a custom loss or call(): log, sqrt, division, pow, exp;
        with `params`, the function's parameters (the mistake is in their order)."""
        path, line = code.get("file"), code.get("line")
        if not path or not line:
            return self.fallback(), None
        found = _function_at(code) if params else None
        if found is not None and len(_params(found[1])) >= 2:
            src, func = found
            first, second = _params(func)[:2]
            return SourceRange(path, _name_range(src, first).start, _name_range(src, second).end), None
        src = load_source(path)
        if src is None or src.module is None:
            return line_range(src, path, int(line)), None
        found = _function_at(code)
        func: nodes.NodeNG | None = found[1] if found else None
        if func is None:
            lam = [n for n in src.module.nodes_of_class(nodes.Lambda) if n.lineno == line]
            if not lam:
                return line_range(src, path, int(line)), None
            func = lam[0]
        if code.get("ops"):
            named = _named_calls(func, code["ops"])
            if named:
                return node_range(src, named[-1]), None
            return line_range(src, path, int(line)), None
        risky = _risky_ops(func)
        if risky:
            return node_range(src, risky[0]), GuardSite(src, risky[0], func)
        return SourceRange(path, Position(func.lineno, func.col_offset + 1), Position(func.lineno, len(src.lines[func.lineno - 1]) + 1)), None

    # --------------------------------------------------------------- fixes
    def _feed_fixes(self, spec: FixSpec) -> list[Fix]:
        """Data changes made wherever the model gets data (fit, validation, evaluate, predict)."""
        fit = self.trace.fit
        if fit is None or not fit.site:
            return []
        src = load_source(fit.site[0].file)
        call = call_at(src, fit.site[0]) if src else None
        found = feeds.find_feeds(src, call) if call is not None else None
        if found is None:
            return []
        if spec.feed == "scale_inputs":
            ndim = len(fit.x["shape"]) if fit.x and fit.x.get("shape") else None
            return feeds.input_scaling_fixes(found, ndim, self._first_layer_call())
        if spec.feed == "scale_targets":
            fix = feeds.target_scaling_fix(found)
        elif spec.feed == "one_hot":
            head = next((l for l in reversed(self.trace.layers) if l.is_output), None)
            width = f", num_classes={head.units}" if head and head.units else ""
            utils = keras_prefix(src) + "utils"
            fix = feeds.labels_fix(found, spec.title, lambda t: f"{utils}.to_categorical({t}{width})")
        elif spec.feed in ("labels_shift", "labels_unit"):
            fix = feeds.label_range_fix(found, spec.title, spec.feed.split("_", 1)[1])
        elif spec.feed == "nan_to_num":
            fix = feeds.inputs_fix(found, spec.title, lambda t: f"np.nan_to_num({t})", imports=["import numpy as np"])
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
            _, site = self._anchor(t)
            part = self._fix(dataclasses.replace(spec, title=fix.title, target=None, also=[]), t, site)
            if part is None:
                return None
            for e in part.edits:
                if not any(_overlaps(e.range, x.range) for x in edits):
                    edits.append(e)
        return Fix(fix.title, edits)

    def _fix(self, spec: FixSpec, target: Target, site: FixSite) -> Fix | None:
        if spec.target is not None and spec.target is not target:
            _, site = self._anchor(spec.target)
            target = spec.target
        if spec.rename:
            return self._rename_kwarg(spec, target, spec.rename)
        if spec.swap_params:
            return _swapped_params(spec.title, target.code)
        if spec.arg and target.kind == "compile_arg":
            return self._set_kwarg_of_value(spec, site)
        match site:
            case GuardSite(src, node, func) if spec.guard:
                new = _guarded(src, node, func, probability=spec.guard == "probability")
                return Fix(spec.title, [TextEdit(node_range(src, node), new)]) if new else None
            case ReplaceDefault(r) if spec.new_value is not None:
                # The class default (fixes every instance); the call-site argument comes as a second fix.
                return Fix(spec.title + " (the layer's default)", [TextEdit(node_range(r.src, r.node), match_quotes(text_of(r.src, r.node), spec.new_value))])
            case ReplaceValue(r) if spec.call_args is not None:
                if not isinstance(r.node, nodes.Call):
                    return None
                return Fix(spec.title, [TextEdit(node_range(r.src, r.node), f"{r.node.func.as_string()}({spec.call_args})")])
            case ReplaceValue(r) if spec.new_value is not None:
                return Fix(spec.title, [TextEdit(node_range(r.src, r.node), match_quotes(text_of(r.src, r.node), spec.new_value))])
            case InsertKwarg(call, src) if spec.new_value is not None and target.arg:
                return Fix(spec.title, [insert_kwarg(src, call, target.arg, spec.new_value)])
            case ReplaceOptimizer(r) if spec.new_value is not None and target.arg == "learning_rate":
                cls = self.trace.optimizer.cls if self.trace.optimizer else "Adam"
                return Fix(spec.title, [TextEdit(node_range(r.src, r.node), f"{keras_prefix(r.src)}optimizers.{cls}(learning_rate={spec.new_value})")])
            case ReplaceCall(r) | ReplaceOptimizer(r) if spec.layer_call is not None:
                if not isinstance(r.node, nodes.Call):
                    return None
                func = text_of(r.src, r.node.func)
                module = func.rsplit(".", 1)[0] + "." if "." in func else keras_prefix(r.src) + "layers."
                return Fix(spec.title, [TextEdit(node_range(r.src, r.node), module + spec.layer_call)])
            case ReplaceCall(r) | ReplaceOptimizer(r) if spec.new_value is not None:
                return Fix(spec.title, [TextEdit(node_range(r.src, r.node), match_quotes(text_of(r.src, r.node), spec.new_value))])
        return None

    def _set_kwarg_of_value(self, spec: FixSpec, site: FixSite) -> Fix | None:
        """Set e.g. from_logits= on a loss given as an object; on a string loss, no edit applies."""
        if not isinstance(site, ReplaceValue) or not isinstance(site.resolved.node, nodes.Call):
            return None
        r = site.resolved
        existing = arg_node(r.node, spec.arg, None)
        if existing is not None:
            return Fix(spec.title, [TextEdit(node_range(r.src, existing), spec.new_value or "")])
        return Fix(spec.title, [insert_kwarg(r.src, r.node, spec.arg or "", spec.new_value or "")])

    def _rename_kwarg(self, spec: FixSpec, target: Target, old: str) -> Fix | None:
        frame = target.frame
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
                    return Fix(spec.title, [TextEdit(rng, spec.new_value or "")])
        return None


_SAME_VALUES = {"reshape", "astype", "copy", "flatten", "ravel", "squeeze"}


def _row_selection_of(target: nodes.NodeNG) -> nodes.Name | None:
    """The array a name was cut from when its assignment only selects rows of another
    (`y[1000:]`, `y[idx]`, `y.reshape(-1, 1)`): values unchanged, so their origin is elsewhere.
    Column picks (`data[:, 0]`) and computations create the values: None."""
    stmt = target.parent.parent if isinstance(target.parent, nodes.Tuple) else target.parent
    if not isinstance(stmt, nodes.Assign) or len(stmt.targets) != 1:
        return None
    lhs, value = stmt.targets[0], stmt.value
    if isinstance(lhs, nodes.Tuple) and isinstance(value, nodes.Tuple) and len(lhs.elts) == len(value.elts):
        for elt, val in zip(lhs.elts, value.elts):
            if elt is target:
                value = val
                break
        else:
            return None
    elif lhs is not target:
        return None
    while isinstance(value, nodes.Call) and isinstance(value.func, nodes.Attribute) and value.func.attrname in _SAME_VALUES:
        value = value.func.expr
    if isinstance(value, nodes.Subscript) and isinstance(value.value, nodes.Name) and not isinstance(value.slice, nodes.Tuple):
        return value.value
    return None


def _overlaps(a: SourceRange, b: SourceRange) -> bool:
    if a.file != b.file:
        return False
    a0, a1 = (a.start.line, a.start.column), (a.end.line, a.end.column)
    b0, b1 = (b.start.line, b.start.column), (b.end.line, b.end.column)
    return (a0 < b1 and b0 < a1) or (a0 == b0 and a1 == b1)


_SLICING = ("from_tensor_slices", "from_tensors")


def _dataset_part(value: nodes.NodeNG | None, index: int) -> nodes.NodeNG | None:
    """The `index`-th element of the `(x, y)` tuple a tf.data pipeline was sliced from, through
    its method chain (`.shuffle(...).batch(...)`) and the names it is stored under."""
    for _ in range(8):
        if value is None:
            return None
        if isinstance(value, nodes.Name):
            try:
                _, assigns = value.lookup(value.name)
            except Exception:  # noqa: BLE001
                return None
            before = [a for a in assigns if isinstance(a, nodes.AssignName) and a.lineno is not None and a.lineno <= value.lineno]
            stmt = max(before, key=lambda a: a.lineno).parent if before else None
            value = stmt.value if isinstance(stmt, nodes.Assign) and len(stmt.targets) == 1 else None
        elif isinstance(value, nodes.Call) and isinstance(value.func, nodes.Attribute):
            if value.func.attrname in _SLICING:
                parts = value.args[0] if value.args else None
                if isinstance(parts, (nodes.Tuple, nodes.List)) and len(parts.elts) > index:
                    return parts.elts[index]
                return None
            value = value.func.expr
        else:
            return None
    return None


def _function_at(code: dict[str, Any] | None) -> tuple[Source, nodes.FunctionDef] | None:
    if not code or not code.get("file"):
        return None
    src = load_source(code["file"])
    if src is None or src.module is None:
        return None
    for f in src.module.nodes_of_class(nodes.FunctionDef):
        # co_firstlineno of a decorated function is its first decorator's line
        if f.lineno == code.get("line") or (f.decorators is not None and f.decorators.nodes[0].lineno == code.get("line")):
            return src, f
    return None


def _params(func: nodes.FunctionDef) -> list[nodes.AssignName]:
    """Its positional parameters, without the method's self."""
    args = list(func.args.args)
    return args[1:] if args and args[0].name in ("self", "cls") and func.is_method() else args


def _swapped_params(title: str, code: dict[str, Any] | None) -> Fix | None:
    """The function's first two parameters swapped in its signature (its body keeps its names)."""
    found = _function_at(code)
    if found is None:
        return None
    src, func = found
    params = _params(func)
    if len(params) < 2:
        return None
    a, b = params[:2]
    return Fix(title, [TextEdit(_name_range(src, a), b.name), TextEdit(_name_range(src, b), a.name)])


def _name_range(src: Source, param: nodes.AssignName) -> SourceRange:
    """The parameter's name alone (its node spans its annotation too)."""
    start = Position(param.lineno, param.col_offset + 1)
    return SourceRange(src.path, start, Position(param.lineno, param.col_offset + 1 + len(param.name)))


def _named_calls(func: nodes.NodeNG, names: list[str]) -> list[nodes.Call]:
    """Calls of functions with these names inside `func`, in source order (`tf.nn.softmax(x)`)."""
    found = [c for c in func.nodes_of_class(nodes.Call) if call_name(c) in names]
    return sorted(found, key=lambda c: (c.lineno, c.col_offset))


_RISKY = {"log": 0, "log1p": 2, "sqrt": 1, "rsqrt": 1, "reciprocal": 1, "pow": 2, "exp": 3, "divide": 1, "truediv": 1, "div": 1}


def _risky_ops(func: nodes.FunctionDef) -> list[nodes.NodeNG]:
    """Operations that can create NaN/Inf from finite inputs, most likely first."""
    found: list[tuple[int, int, nodes.NodeNG]] = []
    for n in func.nodes_of_class((nodes.Call, nodes.BinOp)):
        if isinstance(n, nodes.Call):
            name = call_name(n)
            if name in _RISKY and name != "log1p":
                found.append((_RISKY[name], n.lineno, n))
        elif n.op in ("/", "**", "//"):
            found.append((1 if n.op == "/" else 2, n.lineno, n))
    found.sort(key=lambda t: (t[0], t[1]))
    return [n for _, _, n in found]


# A divisor named like a spread of the data: zero for a constant column, so 0/0 = NaN.
_SPREAD = re.compile(r"std|var|sigma|scale|range|ptp|norm|max|min|count|sum|total|len", re.I)


def _nonfinite_producer(stmt: nodes.NodeNG) -> nodes.NodeNG | None:
    """The operation that can turn finite data into NaN/Inf (a division by a computed value, a log,
    a sqrt), in the statement that gave the data its values or in those it reads from, nearest
    first, through the helper functions it calls. Divisions by a literal cannot: they are skipped."""
    seen: set[nodes.NodeNG] = set()
    todo: list[nodes.NodeNG] = [stmt]
    while todo and len(seen) < 40:
        current = todo.pop(0)
        if current in seen:
            continue
        seen.add(current)
        ops = _data_risky_ops(current)
        if ops:
            return ops[0]
        for name in current.nodes_of_class(nodes.Name):
            try:
                _, defs = name.lookup(name.name)
            except Exception:  # noqa: BLE001
                continue
            funcs = [d for d in defs if isinstance(d, nodes.FunctionDef)]
            earlier = [d for d in defs if isinstance(d, nodes.AssignName) and d.lineno is not None and d.lineno < current.lineno]
            if funcs:
                todo.append(funcs[-1])
            elif earlier:
                todo.append(max(earlier, key=lambda d: d.lineno).statement())
    return None


def _data_risky_ops(node: nodes.NodeNG) -> list[nodes.NodeNG]:
    """Risky operations on data in `node`, the likeliest first: a division by a spread, a log or sqrt, another division."""
    found: list[tuple[int, int, nodes.NodeNG]] = []
    for n in node.nodes_of_class((nodes.Call, nodes.BinOp)):
        if isinstance(n, nodes.BinOp) and n.op == "/" and not isinstance(n.right, nodes.Const):
            found.append((0 if _SPREAD.search(n.right.as_string()) else 2, n.lineno, n))
        elif isinstance(n, nodes.Call) and call_name(n) in ("log", "sqrt", "log2", "log10", "reciprocal"):
            found.append((1, n.lineno, n))
    found.sort(key=lambda t: (t[0], t[1]))
    return [n for _, _, n in found]


def _guarded(src: Source, node: nodes.NodeNG, func: nodes.NodeNG | None = None, probability: bool = False) -> str | None:
    """The risky operation made safe the way Keras' own losses do it.

    In a loss `f(y_true, y_pred)`, the prediction is clamped where it enters the log, not
    the log's whole argument: `log(y_pred + 1)` -> `log(maximum(y_pred, 1e-7) + 1)` (as
    `keras.losses.msle`), and a probability is clipped into [1e-7, 1 - 1e-7]
    (`probability`), so `log(1 - y_pred)` is safe too. Elsewhere: `log(x)` ->
    `log(maximum(x, 1e-7))`, `sqrt(x)` -> `sqrt(maximum(x, 0.0))`, `a / b` -> `a / (b + 1e-7)`.
    """
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
