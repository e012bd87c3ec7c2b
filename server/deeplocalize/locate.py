"""From a detector's Target to a source range and text edits.

Runtime call sites say which call created a layer or optimizer (exact through
loops and helpers); the syntax tree narrows that to the token to change and
follows names back to the line that defines them (`lr = 5.0` ...
`SGD(learning_rate=lr)`), including helper-function parameters bound at the
caller's call site.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import astroid
from astroid import nodes

from .findings import Finding, Fix, FixSpec, LocatedFinding, Position, SourceRange, Target, TextEdit
from .trace import Frame, Trace


@dataclass
class Source:
    path: str
    text: str
    lines: list[str]
    module: nodes.Module | None


@lru_cache(maxsize=64)
def _load(path: str, mtime: float, size: int) -> Source:
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    try:
        module = astroid.parse(text, path=path)
    except Exception:  # noqa: BLE001 - a file astroid cannot parse still gets line ranges
        module = None
    return Source(path, text, text.splitlines(), module)


def load_source(path: str) -> Source | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _load(os.path.abspath(path), st.st_mtime, st.st_size)


def _col_from_bytes(line_text: str, byte_col: int | None) -> int:
    """co_positions columns are UTF-8 byte offsets; ranges are in characters."""
    if byte_col is None:
        return 0
    return len(line_text.encode("utf-8")[:byte_col].decode("utf-8", "replace"))


def node_range(src: Source, node: nodes.NodeNG) -> SourceRange:
    return SourceRange(src.path, Position(node.lineno, node.col_offset + 1), Position(node.end_lineno or node.lineno, (node.end_col_offset or node.col_offset) + 1))


def line_range(src: Source | None, path: str, line: int) -> SourceRange:
    text = src.lines[line - 1] if src and 0 < line <= len(src.lines) else ""
    start = len(text) - len(text.lstrip())
    return SourceRange(path, Position(line, start + 1), Position(line, max(len(text.rstrip()), start) + 1))


def frame_range(frame: Frame) -> SourceRange:
    src = load_source(frame.file)
    if src is None or frame.col is None or frame.end_line is None:
        return line_range(src, frame.file, frame.line)
    sc = _col_from_bytes(src.lines[frame.line - 1], frame.col) if frame.line <= len(src.lines) else 0
    ec = _col_from_bytes(src.lines[frame.end_line - 1], frame.end_col) if frame.end_line <= len(src.lines) else sc
    return SourceRange(frame.file, Position(frame.line, sc + 1), Position(frame.end_line, ec + 1))


def call_at(src: Source, frame: Frame) -> nodes.Call | None:
    """The Call node a runtime frame is executing: same start, and same end when known
    (`Dense(8)(x)` starts two calls at one column; the constructor is the inner one)."""
    if src.module is None or not 0 < frame.line <= len(src.lines):
        return None
    col = _col_from_bytes(src.lines[frame.line - 1], frame.col) if frame.col is not None else None
    calls = list(src.module.nodes_of_class(nodes.Call))
    starts = [c for c in calls if c.lineno == frame.line and (col is None or c.col_offset == col)]
    if starts and frame.end_col is not None and frame.end_line is not None and frame.end_line <= len(src.lines):
        end = _col_from_bytes(src.lines[frame.end_line - 1], frame.end_col)
        exact = [c for c in starts if c.end_lineno == frame.end_line and c.end_col_offset == end]
        if exact:
            return exact[0]
    if starts:
        return min(starts, key=lambda c: ((c.end_lineno or 0) - c.lineno, (c.end_col_offset or 0) - c.col_offset))
    spanning = [c for c in calls if c.lineno <= frame.line <= (c.end_lineno or c.lineno)]
    return min(spanning, key=lambda c: (c.end_lineno or 0) - c.lineno) if spanning else None


def _arg_node(call: nodes.Call, name: str | None, position: int | None) -> nodes.NodeNG | None:
    for kw in call.keywords or []:
        if kw.arg == name:
            return kw.value
    if position is not None and position < len(call.args) and not isinstance(call.args[position], nodes.Starred):
        return call.args[position]
    return None


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

    def _fixes(self, specs: list[FixSpec], target: Target, arg_site: Any, root_cause: str | None, anchor: SourceRange) -> list[Fix]:
        fixes = []
        for spec in specs:
            fix = self._fix(spec, target, arg_site)
            if fix is not None and spec.also:
                fix = self._with_companions(fix, spec.also, target)
            if fix is not None:
                fixes.append(fix)
            if arg_site and arg_site[0] == "replace_default" and arg_site[4] and spec.new_value:
                _, _, call, src, param = arg_site
                fixes.append(Fix(spec.title + " (at this call)", [_insert_kwarg(src, call, param, spec.new_value)]))
        for fix in fixes:
            fix.root_cause, fix.anchor = root_cause, anchor
        return fixes

    # ------------------------------------------------------------ anchors
    def _fallback(self) -> SourceRange:
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
        if target.kind in ("fit_arg", "fit_data"):
            return t.fit.site if t.fit else []
        return []

    def _anchor(self, target: Target) -> tuple[SourceRange, Any]:
        """(range to report, context for fixes)."""
        if target.kind == "frame":
            return (frame_range(target.frame) if target.frame else self._fallback()), None
        if target.kind == "code":
            return self._code_anchor(target.code or {})
        chain = self._site_for(target)
        if not chain:
            return self._fallback(), None
        frame = chain[0]
        src = load_source(frame.file)
        call = call_at(src, frame) if src else None
        if call is None:
            return frame_range(frame), None
        if target.kind == "layer":
            return node_range(src, call), ("replace_call", Resolved(src, call))
        if target.kind == "optimizer_arg" and not (self.trace.optimizer and self.trace.optimizer.site):
            # Optimizer given as a string: the compile call's optimizer= value.
            value = _arg_node(call, "optimizer", 0)
            if value is None:
                return node_range(src, call), None
            r = resolve_value(src, value, chain[1:])
            return node_range(r.src, r.node), ("replace_optimizer", r)
        if target.kind == "optimizer_arg" and target.arg is None:
            return node_range(src, call), ("replace_call", Resolved(src, call))
        if target.kind == "fit_data":
            value = _arg_node(call, target.arg, target.position)
            if value is None:
                return node_range(src, call), None
            return self._data_anchor(src, value, call)
        value = _arg_node(call, target.arg, target.position)
        if value is None and target.arg:
            value = _double_star_entry(src, call, target.arg)
        if value is None and target.kind == "layer_arg" and target.arg:
            default = self._custom_default(target)
            if default is not None:
                return node_range(default[0].src, default[0].node), ("replace_default", default[0], call, src, default[1])
        if value is None:
            return node_range(src, call), ("insert_kwarg", call, src)
        resolved = resolve_value(src, value, chain[1:])
        return node_range(resolved.src, resolved.node), ("replace", resolved)

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
                value = _arg_node(call, "initializer", None)
                if isinstance(value, nodes.Const) and isinstance(value.value, str):
                    return Resolved(src, value), None
        return None

    def _data_anchor(self, src: Source, value: nodes.NodeNG, call: nodes.Call) -> tuple[SourceRange, Any]:
        """The statement that last assigns the array fed to fit (where preprocessing belongs)."""
        if isinstance(value, nodes.Subscript) and isinstance(value.slice, nodes.Const) and isinstance(value.value, nodes.Name):
            # `fit(data["x"], ...)`: the item assignment that stores the array, even inside the helper that builds the dict.
            key = value.slice.value
            stores = [a for a in src.module.nodes_of_class(nodes.Assign) if len(a.targets) == 1 and isinstance(a.targets[0], nodes.Subscript)
                      and isinstance(a.targets[0].slice, nodes.Const) and a.targets[0].slice.value == key]
            if stores:
                stmt = max(stores, key=lambda a: a.lineno)
                name = _text_of(src, stmt.targets[0])
                rng = node_range(src, stmt)
                return rng, ("insert_after", src, stmt, name)
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
        return rng, ("insert_after", src, stmt, name)

    def _code_anchor(self, code: dict[str, Any]) -> tuple[SourceRange, Any]:
        """The risky operation inside a custom loss or call(): log, sqrt, division, pow, exp."""
        path, line = code.get("file"), code.get("line")
        if not path or not line:
            return self._fallback(), None
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
            return node_range(src, risky[0]), ("guard", src, risky[0])
        return SourceRange(path, Position(func.lineno, func.col_offset + 1), Position(func.lineno, len(src.lines[func.lineno - 1]) + 1)), None

    # --------------------------------------------------------------- fixes
    def _with_companions(self, fix: Fix, also: list[FixSpec], target: Target) -> Fix | None:
        """One fix made of several edits; an edit that cannot be placed voids the whole fix
        (half of a combined change leaves the script as broken as before)."""
        edits = list(fix.edits)
        for spec in also:
            t = spec.target or target
            _, ctx = self._anchor(t)
            part = self._fix(FixSpec(fix.title, new_value=spec.new_value, insert_after=spec.insert_after, arg=spec.arg), t, ctx)
            if part is None:
                return None
            for e in part.edits:
                if not any(_overlaps(e.range, x.range) for x in edits):
                    edits.append(e)
        return Fix(fix.title, edits)

    def _fix(self, spec: FixSpec, target: Target, ctx: Any) -> Fix | None:
        if spec.target is not None and spec.target is not target:
            _, ctx = self._anchor(spec.target)
            target = spec.target
        if spec.arg and spec.arg.startswith("rename:"):
            return self._rename_kwarg(spec, target, spec.arg.split(":", 1)[1])
        if spec.arg and target.kind == "compile_arg":
            return self._set_kwarg_of_value(spec, ctx)
        if ctx is None:
            return None
        kind = ctx[0]
        if kind == "guard" and spec.new_value == "{guard}":
            src, node = ctx[1], ctx[2]
            new = _guarded(src, node)
            return Fix(spec.title, [TextEdit(node_range(src, node), new)]) if new else None
        if kind == "replace_default" and spec.new_value is not None:
            # The class default (fixes every instance); the call-site argument comes as a second fix.
            r = ctx[1]
            return Fix(spec.title + " (the layer's default)", [TextEdit(node_range(r.src, r.node), _match_quotes(_text_of(r.src, r.node), spec.new_value))])
        if kind == "replace" and spec.new_value is not None:
            r: Resolved = ctx[1]
            new = spec.new_value
            if "{func}" in new:
                if not isinstance(r.node, nodes.Call):
                    return None
                new = new.replace("{func}", r.node.func.as_string())
            new = _match_quotes(_text_of(r.src, r.node), new)
            return Fix(spec.title, [TextEdit(node_range(r.src, r.node), new)])
        if kind == "insert_kwarg" and spec.new_value is not None and target.arg and "{func}" not in spec.new_value:
            call, src = ctx[1], ctx[2]
            return Fix(spec.title, [_insert_kwarg(src, call, target.arg, spec.new_value)])
        if kind in ("replace_optimizer", "replace_call") and spec.new_value is not None:
            r = ctx[1]
            new = spec.new_value
            if kind == "replace_optimizer" and target.arg == "learning_rate":
                cls = self.trace.optimizer.cls if self.trace.optimizer else "Adam"
                prefix = _keras_prefix(r.src)
                new = f"{prefix}optimizers.{cls}(learning_rate={spec.new_value})"
            elif "{module}" in new:
                if not isinstance(r.node, nodes.Call):
                    return None
                func = _text_of(r.src, r.node.func)
                new = new.replace("{module}", func.rsplit(".", 1)[0] + "." if "." in func else _keras_prefix(r.src) + "layers.")
            else:
                new = _match_quotes(_text_of(r.src, r.node), new)
            return Fix(spec.title, [TextEdit(node_range(r.src, r.node), new)])
        if kind == "insert_after" and spec.insert_after:
            src, stmt, name = ctx[1], ctx[2], ctx[3]
            indent = " " * stmt.col_offset
            line = (stmt.end_lineno or stmt.lineno) + 1
            pos = Position(line, 1)
            text = indent + spec.insert_after.format(name=name) + "\n"
            if line > len(src.lines):
                pos = Position(len(src.lines), len(src.lines[-1]) + 1) if src.lines else Position(1, 1)
                text = "\n" + text.rstrip("\n")
            return Fix(spec.title, [TextEdit(SourceRange(src.path, pos, pos), text)])
        return None

    def _set_kwarg_of_value(self, spec: FixSpec, ctx: Any) -> Fix | None:
        """Set e.g. from_logits= on a loss given as an object; on a string loss, no edit applies."""
        if ctx is None or ctx[0] != "replace":
            return None
        r: Resolved = ctx[1]
        if not isinstance(r.node, nodes.Call):
            return None
        existing = _arg_node(r.node, spec.arg, None)
        if existing is not None:
            return Fix(spec.title, [TextEdit(node_range(r.src, existing), spec.new_value or "")])
        return Fix(spec.title, [_insert_kwarg(r.src, r.node, spec.arg or "", spec.new_value or "")])

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


def _call_name(call: nodes.Call) -> str:
    return call.func.attrname if isinstance(call.func, nodes.Attribute) else getattr(call.func, "name", "")


def _named_calls(func: nodes.NodeNG, names: list[str]) -> list[nodes.Call]:
    """Calls of functions with these names inside `func`, in source order (`tf.nn.softmax(x)`)."""
    found = [c for c in func.nodes_of_class(nodes.Call) if _call_name(c) in names]
    return sorted(found, key=lambda c: (c.lineno, c.col_offset))


_RISKY = {"log": 0, "log1p": 2, "sqrt": 1, "rsqrt": 1, "reciprocal": 1, "pow": 2, "exp": 3, "divide": 1, "truediv": 1, "div": 1}


def _risky_ops(func: nodes.FunctionDef) -> list[nodes.NodeNG]:
    """Operations that can create NaN/Inf from finite inputs, most likely first."""
    found: list[tuple[int, int, nodes.NodeNG]] = []
    for n in func.nodes_of_class((nodes.Call, nodes.BinOp)):
        if isinstance(n, nodes.Call):
            name = _call_name(n)
            if name in _RISKY and name != "log1p":
                found.append((_RISKY[name], n.lineno, n))
        elif n.op in ("/", "**", "//"):
            found.append((1 if n.op == "/" else 2, n.lineno, n))
    found.sort(key=lambda t: (t[0], t[1]))
    return [n for _, _, n in found]


def _guarded(src: Source, node: nodes.NodeNG) -> str | None:
    """`log(x)` -> `log(maximum(x, 1e-7))` in the same namespace; `a / b` -> `a / (b + 1e-7)`."""
    if isinstance(node, nodes.BinOp) and node.op == "/":
        left = _text_of(src, node.left)
        if isinstance(node.left, (nodes.BinOp, nodes.BoolOp, nodes.Compare, nodes.IfExp, nodes.Lambda)):
            left = f"({left})"
        return f"{left} / ({_text_of(src, node.right)} + 1e-7)"
    if isinstance(node, nodes.Call) and node.args:
        func = _text_of(src, node.func)
        prefix = func.rsplit(".", 1)[0] + "." if "." in func else ""
        if prefix in ("", "math.", "np.", "numpy."):
            prefix = "np." if prefix in ("np.", "numpy.") else ""
            if not prefix:
                return None
        rest = ", ".join(_text_of(src, a) for a in node.args[1:])
        floor = "0.0" if func.endswith(("sqrt", "rsqrt")) and not func.endswith("rsqrt") else "1e-7"
        arg = f"{prefix}maximum({_text_of(src, node.args[0])}, {floor})"
        return f"{func}({arg}{', ' + rest if rest else ''})"
    return None


def _text_of(src: Source, node: nodes.NodeNG) -> str:
    lines = src.lines[node.lineno - 1 : (node.end_lineno or node.lineno)]
    if not lines:
        return ""
    if len(lines) == 1:
        return lines[0][node.col_offset : node.end_col_offset]
    return "\n".join([lines[0][node.col_offset :], *lines[1:-1], lines[-1][: node.end_col_offset]])


def _match_quotes(old: str, new: str) -> str:
    if old[:1] == "'" and new[:1] == '"' and new.endswith('"') and "'" not in new[1:-1]:
        return "'" + new[1:-1] + "'"
    return new


def _insert_kwarg(src: Source, call: nodes.Call, name: str, value: str) -> TextEdit:
    end_line = call.end_lineno or call.lineno
    text = src.lines[end_line - 1]
    close = (call.end_col_offset or len(text)) - 1  # the ')' of the call
    before = text[:close].rstrip()
    has_args = bool(call.args or call.keywords)
    sep = "" if not has_args or before.endswith(",") else ", "
    if before.endswith(",") and has_args:
        sep = " "
    pos = Position(end_line, close + 1)
    return TextEdit(SourceRange(src.path, pos, pos), f"{sep}{name}={value}")


def _keras_prefix(src: Source) -> str:
    """How this file spells the keras namespace ('keras.', 'tf.keras.', ...)."""
    text = src.text
    if re.search(r"^\s*(import keras\b|from tensorflow import keras\b)", text, re.M):
        return "keras."
    m = re.search(r"^\s*import tensorflow as (\w+)", text, re.M)
    if m:
        return f"{m.group(1)}.keras."
    return "keras."
