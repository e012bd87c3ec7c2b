"""Configuration smells that become faults when the learning curve confirms them.

Each smell alone is common in working code (raw pixel values with Adam, a linear
hidden layer); it is a warning only when training is also poor, so a correct
program that happens to carry the smell stays quiet (information at most).
"""

from __future__ import annotations

from ..findings import Finding, FixSpec, Layer, LayerArg, NewValue
from ..trace import Trace
from .setup import layer_label, x_scale_problem, y_scale_problem
from .causes import data_target_and_fixes
from .heads import effective_activation, output_head
from ..rules import rule
from .registry import runtime_detector
from .progress import Progress

UNSCALED_INPUTS = rule(
    "unscaled-inputs", "smell", "warning", "input_range",
    "Inputs have large magnitudes or very different feature scales, and the model fits the training data poorly",
    details="(information only when training goes well; raw integer values such as pixels never divided by 255 are a warning). "
            "Fix: a Normalization layer adapted on the training inputs, or a StandardScaler / training statistics applied wherever "
            "the model gets data.",
    causes=("data_normalization",))
UNSCALED_TARGETS = rule(
    "unscaled-targets", "smell", "warning", "target_range",
    "Regression targets are large, which scales the loss and the gradients.",
    details="Fix: standardize the targets with training statistics wherever the model gets them, predictions mapped back to the original units.",
    causes=("data_normalization",))
SOFTMAX_HIDDEN = rule(
    "softmax-in-hidden-layer", "smell", "warning", "activation_misuse",
    "A hidden layer uses softmax, which forces its units to sum to 1, and the model fits poorly. Fix: relu.",
    causes=("activation",))
LINEAR_NETWORK = rule(
    "no-nonlinearity", "smell", "warning", "underfitting",
    "No hidden layer has an activation, so the network is linear, and it fits poorly. Fix: relu on the hidden layers.",
    causes=("activation",))

_DENSE_LIKE = {"Dense", "Conv1D", "Conv2D", "Conv3D", "EinsumDense"}


@runtime_detector
def detect_unscaled_data(trace: Trace, progress: Progress | None) -> list[Finding]:
    if progress is None:
        return []
    out = []
    severity = "warning" if progress.poor else "information"
    xs = x_scale_problem(trace)
    x = trace.fit.x if trace.fit else None
    # Integer values up to 255 and beyond, fed raw: pixels or counts that were never divided.
    raw = bool(xs and x and x.get("integer_valued") and xs["input_abs_max"] >= 100)
    if xs:
        if raw:
            severity = "warning"
            xs = {**xs, "integer_valued": True}
        target, fixes = data_target_and_fixes("x")
        out.append(UNSCALED_INPUTS.finding(
            f"Inputs are not scaled (max |x| = {xs['input_abs_max']:g}"
                + (f", feature scales differ {xs['feature_scale_spread']:g}x" if xs.get("feature_scale_spread") else "")
                + ")" + (" and the model fits the training data poorly." if progress.poor else
                "; integer values fed raw (e.g. pixels never divided by 255)." if raw else "."),
            target,
            severity=severity,
            evidence=xs,
            fixes=fixes,
        ))
    ys = y_scale_problem(trace)
    if ys and progress.rel_improvement < 0.9:
        target, fixes = data_target_and_fixes("y")
        out.append(UNSCALED_TARGETS.finding(
            f"Regression targets are large (max |y| = {ys['target_abs_max']:g}); the loss and gradients scale with them.",
            target,
            severity=severity,
            evidence=ys,
            fixes=fixes,
        ))
    return out


@runtime_detector
def detect_activation_smells(trace: Trace, progress: Progress | None) -> list[Finding]:
    if progress is None or not progress.poor:
        return []
    head = output_head(trace)
    hidden = [l for l in trace.layers if not l.is_output and l.cls in _DENSE_LIKE and (head is None or l is not head.units_layer)]
    for l in hidden:
        act, setter = effective_activation(trace, l)
        if act == "softmax":
            head_like = head is not None and setter is head.act_layer
            if head_like:
                continue
            arg = LayerArg(layer=setter.index, arg="activation", position=0 if setter.cls == "Activation" else None)
            return [SOFTMAX_HIDDEN.finding(
                f"{layer_label(setter)} applies softmax to a hidden layer: it squashes its units to sum to 1, starving the layers after it.",
                arg if setter.cls in ("Dense", "Activation") or setter is l else Layer(layer=setter.index),
                layer=setter.index,
                fixes=[FixSpec('Use activation "relu"', NewValue('"relu"'))] if setter.cls in ("Dense", "Activation") or setter is l else [],
            )]
    has_nonlinearity = any(l.activation not in (None, "linear") for l in hidden) or any(
        l.cls in ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax") for l in trace.layers if not l.is_output)
    if hidden and not has_nonlinearity:
        first = hidden[0]
        return [LINEAR_NETWORK.finding(
            f"None of the {len(hidden)} hidden layer(s) has an activation, so the whole network is linear and cannot fit this data.",
            LayerArg(layer=first.index, arg="activation"),
            layer=first.index,
            fixes=[FixSpec('Use activation "relu"', NewValue('"relu"'))],
            confidence="weak",
        )]
    return []
