"""The activations a model really applies, read from its layer graph.

`Dense(10)` followed by `Activation("softmax")`, `Softmax()` or `ReLU()` (through
Dropout and similar) is a softmax/relu output; an activation applied inside a
Lambda or the model's own call() is inferred from the first predictions. Every
activation rule reads activations from here, so each works for all of these and
points at the line that sets the activation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..findings import CodeTarget, FixSpec, Layer, LayerArg, LayerCall, NewValue, Target
from ..trace import LayerInfo, Trace

# Layers that only apply an activation, and layers that pass values through
# unchanged in range: `Dense(10)` + `Dropout` + `Activation("softmax")` is a softmax output.
ACTIVATION_ONLY = {"Activation", "Softmax", "ReLU", "LeakyReLU", "ELU", "PReLU"}
PASSTHROUGH = {"Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Reshape", "Flatten", "Lambda"}
_OP_NAMES = {"softmax": ["softmax"], "sigmoid": ["sigmoid"], "relu": ["relu", "relu6"], "tanh": ["tanh"]}


def producer(trace: Trace, layer: LayerInfo) -> LayerInfo | None:
    """The layer feeding this one: the graph's single input, else the previous layer in model order."""
    if len(layer.inputs) == 1:
        return trace.layer(layer.inputs[0])
    if layer.inputs:
        return None
    return trace.layer(layer.index - 1)


def consumers(trace: Trace, layer: LayerInfo) -> list[LayerInfo]:
    if any(l.inputs for l in trace.layers):
        return [l for l in trace.layers if l.inputs == [layer.index]]
    nxt = trace.layer(layer.index + 1)
    return [nxt] if nxt is not None else []


def effective_activation(trace: Trace, layer: LayerInfo) -> tuple[str, LayerInfo]:
    """The activation a weighted layer's output really goes through, and the layer that sets it.

    A separate Activation/Softmax/ReLU layer right after it (through pass-through
    layers such as Dropout) overrides a linear `activation=`.
    """
    own = layer.activation or "linear"
    cur = layer
    for _ in range(4):
        nxt = consumers(trace, cur)
        if len(nxt) != 1:
            break
        cur = nxt[0]
        if cur.cls in ACTIVATION_ONLY and cur.activation:
            return cur.activation, cur
        if cur.cls not in PASSTHROUGH - {"Lambda"}:
            break
    return own, layer


@dataclass
class Head:
    """The model's output as the loss sees it: how many units, which activation, set where.

    `where` is "layer" (an activation argument or layer), "lambda" (a Lambda layer's
    function) or "call" (the model's own call()); the last two are inferred from the
    observed predictions because no layer declares them.
    """

    units_layer: LayerInfo
    act_layer: LayerInfo
    activation: str
    where: str = "layer"

    @property
    def units(self) -> int | None:
        return self.units_layer.units


def observed_output_kind(trace: Trace) -> str | None:
    """What the first predictions look like: softmax (rows sum to 1), sigmoid ([0, 1]), relu (>= 0), linear."""
    rows = [s.values["y_pred"] for s in trace.steps[:5] if "y_pred" in s.values and not s.values["y_pred"].get("nonfinite")]
    if not rows:
        return None
    lo = min(r.get("min", 0.0) for r in rows)
    hi = max(r.get("max", 0.0) for r in rows)
    if lo >= 0.0 and hi <= 1.0:
        if all(abs(r.get("rowsum_mean", 0.0) - 1.0) < 1e-3 and r.get("rowsum_std", 1.0) < 1e-3 for r in rows):
            return "softmax"
        return "sigmoid"
    if lo >= 0.0:
        return "relu"
    if lo < -1.0 or hi > 1.0:
        return "linear"
    return None


def output_head(trace: Trace) -> Head | None:
    out = trace.output_layer
    if out is None:
        return None
    cur: LayerInfo | None = out
    act_layer: LayerInfo | None = None
    lam: LayerInfo | None = None
    for _ in range(6):
        if cur is None:
            break
        if cur.cls == "TimeDistributed" and cur.inner is not None:
            cur = trace.layer(cur.inner)
            continue
        if cur.cls in ACTIVATION_ONLY:
            act_layer = act_layer or cur
        elif cur.cls == "Lambda":
            lam = lam or cur
        elif cur.cls not in PASSTHROUGH:
            break
        cur = producer(trace, cur)
    units_layer = cur if cur is not None and cur.units else out
    if act_layer is None:
        act_layer = units_layer
    act = act_layer.activation or "linear"
    if act_layer is units_layer and act == "linear":
        seen = observed_output_kind(trace)
        if seen in ("softmax", "sigmoid", "relu"):
            if lam is not None:
                return Head(units_layer, lam, seen, "lambda")
            if trace.model_call_code:
                return Head(units_layer, units_layer, seen, "call")
    return Head(units_layer, act_layer, act)


def activation_target(trace: Trace, head: Head) -> Target:
    """Where the output activation is written, as a Target the locator understands."""
    layer = head.act_layer
    if head.where == "call" and trace.model_call_code:
        return CodeTarget(dataclasses.replace(trace.model_call_code, ops=tuple(_OP_NAMES.get(head.activation, [head.activation]))), layer=layer.index)
    if head.where == "lambda" or layer.cls in ACTIVATION_ONLY - {"Activation"}:
        return Layer(layer=layer.index)
    if layer.cls == "Activation":
        return LayerArg(layer=layer.index, arg="activation", position=0)
    return LayerArg(layer=layer.index, arg="activation")


def activation_fix(trace: Trace, head: Head, new: str, title: str) -> FixSpec | None:
    """A fix that makes the output activation `new`, whichever way it was written."""
    layer = head.act_layer
    if head.where != "layer":
        return None
    if layer.cls in ACTIVATION_ONLY - {"Activation"}:
        return FixSpec(title, LayerCall(f'Activation("{new}")'))
    return FixSpec(title, NewValue(f'"{new}"'))
