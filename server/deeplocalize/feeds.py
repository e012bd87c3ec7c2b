"""Every place a script hands data to its model, and fixes that change all of them alike.

A data fix applied where the training array is built (`X_train = (X_train - m) / s`)
silently breaks what follows `fit`: `evaluate(X_test, ...)` and `predict(...)` see
data on another scale, and the script's own test numbers get worse. The fixes
built here keep the whole script right:

- a `Normalization` layer adapted on the training data and placed at the model's
  input (it travels with the model to `evaluate`, `predict` and a saved model);
- a transformation with statistics of the training data only (scikit-learn's
  `StandardScaler`, or numpy), applied at every call that feeds the model: the
  `fit` data, its `validation_data`, and what `evaluate`/`predict` receive, with
  predictions mapped back when the targets were scaled.

The arrays are transformed where they are handed over, not rebound, so every other
use of the same names (plots, the script's own metrics) keeps its meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from astroid import nodes

from .findings import Fix, Position, SourceRange, TextEdit
from .source import Source, arg_node, call_name, keras_prefix, node_range, text_of

# method -> (position of x, position of y); y None: the method takes no targets.
FEED_METHODS = {"fit": (0, 1), "evaluate": (0, 1), "predict": (0, None), "train_on_batch": (0, 1), "test_on_batch": (0, 1), "predict_on_batch": (0, None)}
PREDICTING = ("predict", "predict_on_batch", "__call__")
NORMALIZER_NAME = "input_normalization"


@dataclass
class Feed:
    method: str  # a FEED_METHODS key, or "__call__" for `model(x)`
    call: nodes.Call
    x: nodes.NodeNG | None
    y: nodes.NodeNG | None


@dataclass
class Feeds:
    """The calls that give the fitted model data, in source order."""

    src: Source
    fit: nodes.Call
    receiver: str
    calls: list[Feed]
    validation: tuple[nodes.NodeNG | None, nodes.NodeNG | None] = (None, None)
    # Why the data cannot all be transformed in place (validation data in a variable,
    # a feed in another function, a feed before the fit): the in-place variants are not offered.
    unreachable: list[str] = field(default_factory=list)

    @property
    def fit_statement(self) -> nodes.NodeNG:
        return self.fit.statement()


def find_feeds(src: Source, fit: nodes.Call) -> Feeds | None:
    if src.module is None or not isinstance(fit.func, nodes.Attribute):
        return None
    receiver = text_of(src, fit.func.expr)
    scope = fit.scope()
    feeds = Feeds(src, fit, receiver, [])
    for call in sorted(src.module.nodes_of_class(nodes.Call), key=lambda c: (c.lineno, c.col_offset)):
        method = _feed_method(src, call, receiver)
        if method is None:
            continue
        xpos, ypos = FEED_METHODS.get(method, (0, None))
        feed = Feed(method, call, arg_node(call, "x", xpos), arg_node(call, "y", ypos) if ypos is not None else None)
        if call.scope() is not scope:
            feeds.unreachable.append(f"{method} at line {call.lineno} is in another function")
            continue
        if call.lineno < fit.lineno:
            feeds.unreachable.append(f"{method} at line {call.lineno} comes before the fit")
            continue
        feeds.calls.append(feed)
        if call is fit:
            feeds.validation = _validation_of(feeds, call)
        elif method == "fit" and arg_node(call, "validation_data", None) is not None:
            feeds.unreachable.append(f"a second fit at line {call.lineno} has its own validation data")
    return feeds


def _feed_method(src: Source, call: nodes.Call, receiver: str) -> str | None:
    func = call.func
    if isinstance(func, nodes.Attribute) and func.attrname in FEED_METHODS and text_of(src, func.expr) == receiver:
        return func.attrname
    if isinstance(func, nodes.Name) and func.name == receiver and call.args:
        return "__call__"
    return None


def _validation_of(feeds: Feeds, fit: nodes.Call) -> tuple[nodes.NodeNG | None, nodes.NodeNG | None]:
    value = arg_node(fit, "validation_data", 6)
    if value is None:
        return None, None
    if isinstance(value, (nodes.Tuple, nodes.List)) and len(value.elts) >= 2:
        return value.elts[0], value.elts[1]
    feeds.unreachable.append(f"validation_data is given as '{text_of(feeds.src, value)}'")
    return None, None


# ---------------------------------------------------------------- helpers
def _free_name(src: Source, base: str) -> str:
    taken = set(re.findall(r"\b\w+\b", src.text))
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def _statement_start(src: Source, stmt: nodes.NodeNG) -> tuple[Position, str] | None:
    """Where a line can be inserted before `stmt`, and its indentation; None when the
    statement shares its line with another (`if c: model.fit(...)`)."""
    line = src.lines[stmt.lineno - 1] if 0 < stmt.lineno <= len(src.lines) else ""
    indent = line[: stmt.col_offset]
    if indent.strip():
        return None
    return Position(stmt.lineno, 1), indent


def _insert_before(src: Source, stmt: nodes.NodeNG, lines: list[str]) -> TextEdit | None:
    where = _statement_start(src, stmt)
    if where is None:
        return None
    pos, indent = where
    return TextEdit(SourceRange(src.path, pos, pos), "".join(f"{indent}{l}\n" for l in lines))


def _import_edit(src: Source, line: str) -> TextEdit | None:
    """`line` after the module's last top-level import (nothing when it is already there)."""
    if src.module is None or re.search(rf"^\s*{re.escape(line)}\s*$", src.text, re.M):
        return None
    imports = [n for n in src.module.body if isinstance(n, (nodes.Import, nodes.ImportFrom))]
    after = (imports[-1].end_lineno or imports[-1].lineno) if imports else 0
    pos = Position(after + 1, 1)
    return TextEdit(SourceRange(src.path, pos, pos), line + "\n")


def _wrap(src: Source, node: nodes.NodeNG, template: Callable[[str], str]) -> TextEdit:
    return TextEdit(node_range(src, node), template(text_of(src, node)))


def transform_everywhere(feeds: Feeds, which: str, template: Callable[[str], str], prelude: list[str],
                         predictions: Callable[[str], str] | None = None, imports: list[str] | None = None) -> list[TextEdit] | None:
    """Edits that apply `template` to the inputs (`which="x"`) or targets (`"y"`) of every
    feed, with `prelude` (statistics of the training data) just before the fit, and
    `predictions` mapping each predict call's result back. None when some feed cannot be
    reached in place: half of the data transformed is worse than none."""
    if feeds.unreachable:
        return None
    src = feeds.src
    edits: list[TextEdit] = []
    for imp in imports or []:
        e = _import_edit(src, imp)
        if e is not None:
            edits.append(e)
    if prelude:
        e = _insert_before(src, feeds.fit_statement, prelude)
        if e is None:
            return None
        edits.append(e)
    changed = False
    for feed in feeds.calls:
        node = feed.x if which == "x" else feed.y
        if node is not None:
            edits.append(_wrap(src, node, template))
            changed = True
        elif which == "y" and feed.method in PREDICTING and predictions is not None:
            edits.append(_wrap(src, feed.call, predictions))
        elif which == "x" and feed.call is feeds.fit:
            return None  # a fit whose inputs are not an argument (a dataset with targets inside)
    val = feeds.validation[0 if which == "x" else 1]
    if val is not None:
        edits.append(_wrap(src, val, template))
    return edits if changed else None


def training_expr(feeds: Feeds, which: str) -> str | None:
    fit_feed = next((f for f in feeds.calls if f.call is feeds.fit), None)
    node = (fit_feed.x if which == "x" else fit_feed.y) if fit_feed else None
    if node is None:
        return None
    text = text_of(feeds.src, node)
    return text if "\n" not in text else None


def _reduce_axes(ndim: int | None) -> str:
    """Per feature for tables; per channel for images and sequences (a per-pixel std is 0 on
    constant borders, and test images would be divided by it)."""
    if not ndim or ndim <= 2:
        return "0"
    return "(" + ", ".join(str(i) for i in range(ndim - 1)) + ")"


# ---------------------------------------------------------------- input scaling
def input_scaling_fixes(feeds: Feeds, ndim: int | None, first_layer: tuple[Source, nodes.Call] | None) -> list[Fix]:
    """The Normalization layer first (it travels with the model), then StandardScaler on
    tables when the script uses scikit-learn, else numpy statistics of the training split."""
    fixes: list[Fix] = []
    layer = normalization_layer_fix(feeds, first_layer)
    if layer is not None:
        fixes.append(layer)
    train = training_expr(feeds, "x")
    if train is None:
        return fixes
    src = feeds.src
    if ndim == 2 and re.search(r"^\s*(from|import)\s+sklearn\b", src.text, re.M):
        scaler = _free_name(src, "scaler")
        edits = transform_everywhere(feeds, "x", lambda t: f"{scaler}.transform({t})", [f"{scaler} = StandardScaler().fit({train})"],
                                     imports=["from sklearn.preprocessing import StandardScaler"])
        if edits:
            fixes.append(Fix("Standardize the inputs with a StandardScaler fitted on the training data (applied wherever the model gets data)", edits))
            return fixes
    mean, std = _free_name(src, "x_mean"), _free_name(src, "x_std")
    axes = _reduce_axes(ndim)
    edits = transform_everywhere(feeds, "x", lambda t: f"({t} - {mean}) / {std}",
                                 [f"{mean}, {std} = {train}.mean(axis={axes}), {train}.std(axis={axes}) + 1e-8"])
    if edits:
        fixes.append(Fix("Standardize the inputs with training-data statistics (applied wherever the model gets data)", edits))
    return fixes


def normalization_layer_fix(feeds: Feeds, first_layer: tuple[Source, nodes.Call] | None) -> Fix | None:
    """A `Normalization` layer before the first layer, adapted on the fit's inputs just
    before the fit (found by name, so a model built in a helper works too)."""
    train = training_expr(feeds, "x")
    if first_layer is None or train is None:
        return None
    lsrc, call = first_layer
    keras = keras_prefix(lsrc)
    layer = f'{keras}layers.Normalization(name="{NORMALIZER_NAME}")'
    place = _layer_insertion(lsrc, call, layer)
    if place is None:
        return None
    adapt = _insert_before(feeds.src, feeds.fit_statement, [f'{feeds.receiver}.get_layer("{NORMALIZER_NAME}").adapt({train})'])
    if adapt is None:
        return None
    return Fix("Add a Normalization layer adapted on the training inputs (it stays with the model for evaluate/predict)", [place, adapt])


def _layer_insertion(src: Source, call: nodes.Call, layer: str) -> TextEdit | None:
    """Put `layer` in front of the layer built by `call`: an element of a Sequential list,
    a `model.add(...)` before it, or applied to its input in a functional chain."""
    parent = call.parent
    if isinstance(parent, (nodes.List, nodes.Tuple)) and isinstance(parent.parent, nodes.Call) and call_name(parent.parent) == "Sequential":
        pos = Position(call.lineno, call.col_offset + 1)
        multiline = any(e.lineno != call.lineno for e in parent.elts)
        sep = ",\n" + " " * call.col_offset if multiline else ", "
        return TextEdit(SourceRange(src.path, pos, pos), layer + sep)
    if isinstance(parent, nodes.Call) and call in parent.args and call_name(parent) == "add" and isinstance(parent.func, nodes.Attribute):
        stmt = parent.statement()
        return _insert_before(src, stmt, [f"{text_of(src, parent.func.expr)}.add({layer})"])
    if isinstance(parent, nodes.Call) and parent.func is call and len(parent.args) == 1:
        arg = parent.args[0]
        return TextEdit(node_range(src, arg), f"{layer}({text_of(src, arg)})")
    return None


# ---------------------------------------------------------------- targets and labels
def target_scaling_fix(feeds: Feeds) -> Fix | None:
    """Train on standardized targets; predictions mapped back to the original units."""
    train = training_expr(feeds, "y")
    if train is None:
        return None
    src = feeds.src
    mean, std = _free_name(src, "y_mean"), _free_name(src, "y_std")
    edits = transform_everywhere(feeds, "y", lambda t: f"({t} - {mean}) / {std}", [f"{mean}, {std} = {train}.mean(axis=0), {train}.std(axis=0)"],
                                 predictions=lambda t: f"({t} * {std} + {mean})")
    if not edits:
        return None
    return Fix("Standardize the regression targets with training-data statistics (predictions scaled back)", edits)


def labels_fix(feeds: Feeds, title: str, template: Callable[[str], str], prelude: list[str] | None = None,
               imports: list[str] | None = None) -> Fix | None:
    """A label encoding (one-hot, a shift) applied to the targets of every feed alike."""
    edits = transform_everywhere(feeds, "y", template, prelude or [], imports=imports)
    return Fix(title, edits) if edits else None


def label_range_fix(feeds: Feeds, title: str, kind: str) -> Fix | None:
    """Labels moved into the range the loss expects, with the training labels' min (and max):
    `shift` to start at 0, `unit` onto {0, 1}."""
    train = training_expr(feeds, "y")
    if train is None:
        return None
    lo = _free_name(feeds.src, "y_min")
    if kind == "shift":
        return labels_fix(feeds, title, lambda t: f"({t} - {lo})", [f"{lo} = {train}.min()"])
    hi = _free_name(feeds.src, "y_max")
    return labels_fix(feeds, title, lambda t: f"({t} - {lo}) / ({hi} - {lo})", [f"{lo}, {hi} = {train}.min(), {train}.max()"])


def inputs_fix(feeds: Feeds, title: str, template: Callable[[str], str], imports: list[str] | None = None) -> Fix | None:
    edits = transform_everywhere(feeds, "x", template, [], imports=imports)
    return Fix(title, edits) if edits else None
