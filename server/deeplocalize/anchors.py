"""Where a finding is anchored in the source: one strategy per target kind.

Runtime call sites say which call created a layer or optimizer (exact through loops and
helpers); the syntax tree narrows that to the token to change and follows names back to the
line that defines them (`lr = 5.0` ... `SGD(learning_rate=lr)`), including helper-function
parameters bound at the caller's call site. Next to the range it reports, each strategy says
where a fix is written (a `FixSite`); `locate` builds the fixes there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from astroid import nodes

from .findings import (
    CodeTarget, CompileArg, FitArg, FitData, FrameTarget, Layer, LayerArg, NonfiniteData, OptimizerArg, Position, ScheduleTarget, SourceRange,
    Target,
)
from .source import Source, arg_node, call_at, call_name, frame_range, line_range, load_source, node_range, text_of
from .trace import CodeLocation, Frame, Trace


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


def function_at(code: CodeLocation | None) -> tuple[Source, nodes.FunctionDef] | None:
    if code is None:
        return None
    src = load_source(code.file)
    if src is None or src.module is None:
        return None
    for f in src.module.nodes_of_class(nodes.FunctionDef):
        # co_firstlineno of a decorated function is its first decorator's line
        if f.lineno == code.line or (f.decorators is not None and f.decorators.nodes[0].lineno == code.line):
            return src, f
    return None


def params_of(func: nodes.FunctionDef) -> list[nodes.AssignName]:
    """Its positional parameters, without the method's self."""
    args = list(func.args.args)
    return args[1:] if args and args[0].name in ("self", "cls") and func.is_method() else args


def _default_end(src: Source, func: nodes.FunctionDef, param: nodes.AssignName) -> Position:
    """The end of a parameter with its default value (`alpha=2.`), else of its name."""
    names = [a.name for a in func.args.args]
    defaults = func.args.defaults or []
    i = names.index(param.name) - (len(names) - len(defaults)) if param.name in names else -1
    if 0 <= i < len(defaults):
        d = defaults[i]
        return Position(d.end_lineno or d.lineno, (d.end_col_offset or d.col_offset) + 1)
    return name_range(src, param).end


def name_range(src: Source, param: nodes.AssignName) -> SourceRange:
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
        feeders = _feeding_statements(current)
        if _handles_nan(current):
            # Meant to remove NaN (`np.where(np.isnan(a), fill, a)`) yet NaN came through: its fill value
            # came from a reduction that NaN spoils (`np.mean` where `np.nanmean` was meant), else the handler.
            spoilt = next((c for f in [current, *feeders] for c in _nan_spoilt_reductions(f)), None)
            return spoilt or current
        todo += feeders
    return None


def _feeding_statements(stmt: nodes.NodeNG) -> list[nodes.NodeNG]:
    """The statements (or helper functions) whose results `stmt` reads: each name's latest assignment before it."""
    out: list[nodes.NodeNG] = []
    for name in stmt.nodes_of_class(nodes.Name):
        try:
            _, defs = name.lookup(name.name)
        except Exception:  # noqa: BLE001
            continue
        funcs = [d for d in defs if isinstance(d, nodes.FunctionDef)]
        earlier = [d for d in defs if isinstance(d, nodes.AssignName) and d.lineno is not None and d.lineno < stmt.lineno]
        if funcs:
            out.append(funcs[-1])
        elif earlier:
            out.append(max(earlier, key=lambda d: d.lineno).statement())
    return out


_NAN_HANDLERS = ("isnan", "isfinite", "nan_to_num", "fillna", "dropna", "isna", "isnull")
# NumPy reductions that return NaN when any value is NaN, and their NaN-ignoring twins.
NAN_SAFE = {"mean": "nanmean", "median": "nanmedian", "std": "nanstd", "var": "nanvar", "sum": "nansum", "max": "nanmax",
            "min": "nanmin", "percentile": "nanpercentile", "quantile": "nanquantile"}


def _handles_nan(stmt: nodes.NodeNG) -> bool:
    return isinstance(stmt, nodes.Assign) and any(call_name(c) in _NAN_HANDLERS for c in stmt.nodes_of_class(nodes.Call))


def _nan_spoilt_reductions(stmt: nodes.NodeNG) -> list[nodes.Call]:
    """`np.mean(...)`-style calls in `stmt` (module functions of numpy) that NaN spoils."""
    if not isinstance(stmt, nodes.Assign):
        return []
    return [c for c in stmt.nodes_of_class(nodes.Call) if call_name(c) in NAN_SAFE and isinstance(c.func, nodes.Attribute)
            and c.func.expr.as_string() in ("np", "numpy")]


def _called_function(value: nodes.NodeNG) -> nodes.FunctionDef | None:
    """The user function or method a call goes to (`data.generator("train", 32)`), when the syntax tree can tell."""
    if not isinstance(value, nodes.Call):
        return None
    try:
        inferred = next(value.func.infer())
    except Exception:  # noqa: BLE001 - astroid cannot always infer
        return None
    func = inferred
    while not isinstance(func, nodes.FunctionDef) and hasattr(func, "_proxied"):  # a bound method proxies its function
        func = func._proxied
    return func if isinstance(func, nodes.FunctionDef) and func.root() is value.root() else None


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


@dataclass
class _Call:
    """A call in the user's source with the runtime chain that reached it."""

    src: Source
    call: nodes.Call
    chain: list[Frame]


Anchored = tuple[SourceRange, FixSite]


class Anchors:
    """Anchors the targets of one trace's findings: `anchor(target)` -> (range to report, fix site)."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.script = os.path.abspath(trace.script)
        # One strategy per target type (findings.Target).
        self.by_type: dict[type, Callable[[Any], Anchored]] = {
            FrameTarget: self._frame, CodeTarget: self._code, Layer: self._layer, OptimizerArg: self._optimizer_arg,
            LayerArg: self._call_arg, CompileArg: self._call_arg, FitArg: self._call_arg,
            FitData: self._fit_data, NonfiniteData: self._fit_data, ScheduleTarget: self._schedule,
        }

    def anchor(self, target: Target) -> Anchored:
        return self.by_type[type(target)](target)

    def fallback(self) -> SourceRange:
        """Where a finding without a place of its own is reported: the fit (or compile) call."""
        for info in (self.trace.fit, self.trace.compile):
            if info is not None and info.site:
                return frame_range(info.site[0])
        return SourceRange(self.script, Position(1, 1), Position(1, 1))

    # ------------------------------------------------------- one per target kind
    def _frame(self, target: FrameTarget) -> Anchored:
        return (frame_range(target.frame) if target.frame else self.fallback()), None

    def _code(self, target: CodeTarget) -> Anchored:
        if target.part == "hyperparameters":
            return self._hyperparameters(target.code)
        return self._code_anchor(target.code, params=target.part == "params")

    def _hyperparameters(self, code: CodeLocation) -> Anchored:
        """The numbers a custom function computes with: the parameters of the factory that made
        it (`def focal_loss(gamma=2., alpha=2.)` around `def loss(y_true, y_pred)`), else its own
        signature."""
        found = function_at(code)
        if found is None:
            return self._code_anchor(code)
        src, func = found
        factory = func.parent.scope() if func.parent is not None else None
        captured = set(code.free)
        if isinstance(factory, nodes.FunctionDef):
            given = [a for a in params_of(factory) if a.name in captured] or params_of(factory)
            if given:
                return SourceRange(src.path, name_range(src, given[0]).start, _default_end(src, factory, given[-1])), None
        return SourceRange(src.path, Position(func.lineno, func.col_offset + 1), Position(func.lineno, len(src.lines[func.lineno - 1]) + 1)), None

    def _layer(self, target: Layer) -> Anchored:
        found = self._call(target)
        if not isinstance(found, _Call):
            return found
        return node_range(found.src, found.call), ReplaceCall(Resolved(found.src, found.call))

    def _optimizer_arg(self, target: OptimizerArg) -> Anchored:
        found = self._call(target)
        if not isinstance(found, _Call):
            return found
        src, call = found.src, found.call
        if not (self.trace.optimizer and self.trace.optimizer.site):
            # Optimizer given as a string: the compile call's optimizer= value.
            value = arg_node(call, "optimizer", 0)
            if value is None:
                return node_range(src, call), None
            r = resolve_value(src, value, found.chain[1:])
            return node_range(r.src, r.node), ReplaceOptimizer(r)
        if target.arg is None:
            return node_range(src, call), ReplaceCall(Resolved(src, call))
        return self._call_arg(target)

    def _call_arg(self, target: LayerArg | OptimizerArg | CompileArg | FitArg) -> Anchored:
        """An argument of the call that made the layer, optimizer, compile or fit: its value, followed back to its definition."""
        found = self._call(target)
        if not isinstance(found, _Call):
            return found
        src, call = found.src, found.call
        value = arg_node(call, target.arg, target.position)
        if value is None and target.arg:
            value = _double_star_entry(src, call, target.arg)
        if value is None and isinstance(target, LayerArg):
            default = self._custom_default(target)
            if default is not None:
                return node_range(default[0].src, default[0].node), ReplaceDefault(default[0], call, src, default[1])
        if value is None:
            return node_range(src, call), InsertKwarg(call, src)
        resolved = resolve_value(src, value, found.chain[1:])
        return node_range(resolved.src, resolved.node), ReplaceValue(resolved)

    def _fit_data(self, target: FitData | NonfiniteData) -> Anchored:
        """The data given to fit, where its values were made; for non-finite data, the operation that made them so."""
        found = self._call(target)
        if not isinstance(found, _Call):
            return found
        src, call = found.src, found.call
        value = arg_node(call, target.arg, target.position)
        if value is None and target.position:
            # fit(dataset): the part of the tuple the dataset was sliced from.
            value = _dataset_part(arg_node(call, "x", 0), target.position)
        if value is None:
            return node_range(src, call), None
        anchor, site = self._data_anchor(src, value, call)
        if isinstance(target, NonfiniteData):
            # Where the values were made: the statements behind the array, or the generator that yields the batches.
            made_by = site.stmt if isinstance(site, DataStatement) else _called_function(value)
            op = _nonfinite_producer(made_by) if made_by is not None else None
            if op is not None:
                return node_range(src, op), GuardSite(src, op, None)
        return anchor, site

    def _schedule(self, target: ScheduleTarget) -> Anchored:
        """What changed the rate: in its function (a LearningRateScheduler's, a callback's hook, a
        schedule class's `__call__`) the statement that makes the new rate larger; a schedule
        object given as the optimizer's rate: its call, or the argument that makes it grow."""
        code = target.schedule.code
        if code is not None:
            found = function_at(code)
            if found is None:
                return self._code_anchor(code)
            src, func = found
            raising = _rate_raising_statements(func)
            if raising:
                return node_range(src, raising[0]), None
            return SourceRange(src.path, Position(func.lineno, func.col_offset + 1), Position(func.lineno, len(src.lines[func.lineno - 1]) + 1)), None
        anchor, site = self._optimizer_arg(OptimizerArg(arg="learning_rate", position=0))
        if isinstance(site, ReplaceValue) and isinstance(site.resolved.node, nodes.Call) and target.arg:
            r = site.resolved
            value = arg_node(r.node, target.arg, target.position)
            if value is not None:
                return node_range(r.src, value), ReplaceValue(Resolved(r.src, value))
        return anchor, site

    # ------------------------------------------------------------ helpers
    def _site_for(self, target: Target) -> list[Frame]:
        """The call chain (innermost user frame first) of the call the target belongs to."""
        t = self.trace
        match target:
            case LayerArg() | Layer():
                return t.layers[target.layer].site if 0 <= target.layer < len(t.layers) else []
            case OptimizerArg() if t.optimizer and t.optimizer.site:
                return t.optimizer.site
            case OptimizerArg() | CompileArg():
                return t.compile.site if t.compile else []
        return t.fit.site if t.fit else []

    def _call(self, target: Target) -> "_Call | Anchored":
        """The call the target belongs to, or where to report when it cannot be read."""
        chain = self._site_for(target)
        if not chain:
            return self.fallback(), None
        src = load_source(chain[0].file)
        call = call_at(src, chain[0]) if src else None
        if src is None or call is None:
            return frame_range(chain[0]), None
        return _Call(src, call, chain)

    def _custom_default(self, target: LayerArg) -> tuple[Resolved, str | None] | None:
        """A custom layer's setting that the call site leaves to a default: the default in
        its `__init__` (with the parameter's name), else the literal given to `add_weight` in `build`."""
        layer = self.trace.layer(target.layer)
        code = layer.init_code if layer is not None else None
        if code is None:
            return None
        want = target.arg
        stem = "init" if want.endswith("initializer") else want
        init = function_at(code.init)
        if init is not None:
            src, func = init
            names = [a.name for a in func.args.args]
            defaults = func.args.defaults or []
            with_default = dict(zip(names[len(names) - len(defaults):], defaults))
            for name in sorted(with_default, key=lambda n: (n != want, stem not in n)):
                if (name == want or stem in name) and isinstance(with_default[name], nodes.Const) and isinstance(with_default[name].value, str):
                    return Resolved(src, with_default[name]), name
        build = function_at(code.build)
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

    def _code_anchor(self, code: CodeLocation, params: bool = False) -> tuple[SourceRange, FixSite]:
        """The risky operation inside a custom loss or call(): log, sqrt, division, pow, exp;
        with `params`, the function's parameters (the mistake is in their order)."""
        path, line = code.file, code.line
        if not path or not line:
            return self.fallback(), None
        found = function_at(code) if params else None
        if found is not None and len(params_of(found[1])) >= 2:
            src, func = found
            first, second = params_of(func)[:2]
            return SourceRange(path, name_range(src, first).start, name_range(src, second).end), None
        src = load_source(path)
        if src is None or src.module is None:
            return line_range(src, path, int(line)), None
        found = function_at(code)
        func: nodes.NodeNG | None = found[1] if found else None
        if func is None:
            lam = [n for n in src.module.nodes_of_class(nodes.Lambda) if n.lineno == line]
            if not lam:
                return line_range(src, path, int(line)), None
            func = lam[0]
        if code.ops:
            named = _named_calls(func, list(code.ops))
            if named:
                return node_range(src, named[-1]), None
            return line_range(src, path, int(line)), None
        risky = _risky_ops(func)
        if risky:
            return node_range(src, risky[0]), GuardSite(src, risky[0], func)
        return SourceRange(path, Position(func.lineno, func.col_offset + 1), Position(func.lineno, len(src.lines[func.lineno - 1]) + 1)), None


def _grows(node: nodes.NodeNG) -> bool:
    """An expression that makes a rate larger: multiplied by a constant above 1, raised to a
    power, or added to."""
    for n in [node, *node.nodes_of_class(nodes.BinOp)]:
        if not isinstance(n, nodes.BinOp):
            continue
        consts = [x.value for x in (n.left, n.right) if isinstance(x, nodes.Const) and isinstance(x.value, (int, float))]
        if n.op == "*" and any(c > 1 for c in consts):
            return True
        if n.op in ("**", "+"):
            return True
        if n.op == "/" and isinstance(n.right, nodes.Const) and isinstance(n.right.value, (int, float)) and 0 < n.right.value < 1:
            return True
    return False


def _names_a_rate(target: nodes.NodeNG) -> bool:
    name = target.as_string().rsplit(".", 1)[-1].lower()
    return "rate" in name or name in ("lr", "new_lr", "lr_new")


def _rate_raising_statements(func: nodes.FunctionDef) -> list[nodes.NodeNG]:
    """The returns (a schedule function) and assignments (a callback setting the optimizer's
    rate) whose value makes the rate larger, in source order."""
    found: list[nodes.NodeNG] = []
    for n in func.nodes_of_class((nodes.Return, nodes.Assign, nodes.AugAssign, nodes.Call)):
        if isinstance(n, nodes.Return) and n.value is not None and _grows(n.value):
            found.append(n)
        elif isinstance(n, nodes.AugAssign) and n.op in ("*=", "+=", "**=") and _names_a_rate(n.target):
            found.append(n)
        elif isinstance(n, nodes.Assign) and any(_names_a_rate(t) for t in n.targets) and _grows(n.value):
            found.append(n)
        elif isinstance(n, nodes.Call) and n.func.as_string().endswith(("set_value", ".assign")) and n.args and _grows(n.args[-1]):
            found.append(n)
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))
