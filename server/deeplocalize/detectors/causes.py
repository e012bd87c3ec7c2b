"""From a symptom to its root cause: the candidate causes a trace supports, in the
cause-elimination order, with the source element each blames and the fixes each offers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..findings import Alternative, CompileArg, element, Feed, FitData, FixSpec, LayerArg, NewValue, OptimizerArg, ScheduleTarget, Target
from ..trace import LayerInfo, Trace
from .heads import effective_activation, output_head
from .setup import DEFAULT_LR, RELU_LIKE, SANE_LR, SATURATING, SLOW_BY_DEFAULT, bad_init_layers, loss_family, lr_info, median_log_update_ratio, rate_raised, window, x_scale_problem, y_scale_problem


def suggested_lr(trace: Trace, direction: str) -> str:
    """The optimizer's usual rate when far from it, else one decade in the asked direction."""
    cls, lr, _ = lr_info(trace)
    sane = float(SANE_LR.get(cls, "0.001"))
    if lr is None:
        return _float_literal(sane)
    if direction == "down":
        return _float_literal(sane if lr > sane * 3 else lr / 10)
    return _float_literal(sane if lr < sane / 3 else lr * 10)


def _float_literal(value: float) -> str:
    """A rate as Python source that stays a float (Keras 3 rejects `learning_rate=1`)."""
    text = f"{value:g}"
    return text if any(c in text for c in ".e") else text + ".0"


def lr_target_and_fixes(trace: Trace, direction: str) -> tuple[Target, list[FixSpec]]:
    """The usual rate first; when the rate is more than 30x from it, one decade in the asked
    direction next, for the experiment to try if the usual rate is too far a jump for the run's
    length (a linear regressor that Adam at 0.1 keeps above its minimum trains slowly at 0.001)."""
    new = suggested_lr(trace, direction)
    verb = "Lower" if direction == "down" else "Raise"
    fixes = [FixSpec(f"{verb} the learning rate to {new}", NewValue(new))]
    _, lr, _ = lr_info(trace)
    if lr is not None and (lr > float(new) * 30 if direction == "down" else lr < float(new) / 30):
        step = _float_literal(lr / 10 if direction == "down" else lr * 10)
        fixes.append(FixSpec(f"{verb} the learning rate to {step}", NewValue(step)))
    return OptimizerArg(arg="learning_rate", position=0), fixes


def optimizer_target_and_fixes(trace: Trace) -> tuple[Target, list[FixSpec]]:
    return OptimizerArg(arg=None), [FixSpec("Use the Adam optimizer", NewValue('"adam"'))]


def data_target_and_fixes(which: str = "x") -> tuple[Target, list[FixSpec]]:
    """Scaling fixes are built by the locator from every call that feeds the model
    (training statistics, applied to fit, validation, evaluate and predict alike)."""
    if which == "x":
        return FitData(arg="x", position=0), [FixSpec("Standardize the inputs", Feed("scale_inputs"))]
    return FitData(arg="y", position=1), [FixSpec("Standardize the regression targets", Feed("scale_targets"))]


def init_target_and_fixes(layer: LayerInfo, same: list[LayerInfo] | None = None) -> tuple[Target, list[FixSpec]]:
    """The initializer of `layer`; with `same`, one fix that changes every listed layer
    (a zeros init repeated on each hidden layer is still broken if one is fixed)."""
    init = '"he_normal"' if layer.activation in RELU_LIKE else '"glorot_uniform"'
    also = [FixSpec("", NewValue('"he_normal"' if l.activation in RELU_LIKE else '"glorot_uniform"'), target=LayerArg(layer=l.index, arg="kernel_initializer"))
            for l in (same or []) if l.index != layer.index]
    title = f"Use {init.strip(chr(34))} initialization" + (f" on all {len(also) + 1} layers" if also else "")
    return LayerArg(layer=layer.index, arg="kernel_initializer"), [FixSpec(title, NewValue(init), also=also)]


@dataclass
class Cause:
    root: str
    target: Target
    fixes: list[FixSpec]
    evidence: dict[str, Any]
    strong: bool = True


def classification_with_regression_loss(trace: Trace) -> Cause | None:
    """A classifier (softmax/sigmoid output, class labels) trained with MSE/MAE: the loss, not the step size."""
    head = output_head(trace)
    y = trace.fit.y if trace.fit else None
    if head is None or not y or loss_family(trace) != "regression" or head.activation not in ("softmax", "sigmoid"):
        return None
    if not (y.get("one_hot") or (y.get("integer_valued") and (y.get("n_unique") or 0) <= max(head.units or 2, 2))):
        return None
    new = "binary_crossentropy" if head.activation == "sigmoid" and (head.units or 1) == 1 else (
        "categorical_crossentropy" if y.get("one_hot") else "sparse_categorical_crossentropy")
    return Cause("loss", CompileArg(arg="loss"), [FixSpec(f'Use loss "{new}"', NewValue(f'"{new}"'))],
                 {"loss": trace.compile.loss.get("name") if trace.compile else None, "output_activation": head.activation})


RECURRENT = {"LSTM", "GRU", "SimpleRNN", "LSTMCell", "GRUCell", "SimpleRNNCell", "Bidirectional", "RNN", "ConvLSTM2D"}


def saturating_stack(trace: Trace) -> list[tuple[LayerInfo, LayerInfo]]:
    """Hidden weighted layers whose effective activation saturates (sigmoid/tanh), with the
    layer that sets it. Recurrent layers are left out: tanh is their design, not a mistake."""
    head = output_head(trace)
    out: list[tuple[LayerInfo, LayerInfo]] = []
    for layer in trace.trainable_layers:
        if layer.cls in RECURRENT or (head is not None and layer is head.units_layer) or layer.is_output:
            continue
        act, setter = effective_activation(trace, layer)
        if act in SATURATING:
            out.append((layer, setter))
    return out


def activation_arg_target(setter: LayerInfo) -> Target:
    return LayerArg(layer=setter.index, arg="activation", position=0 if setter.cls == "Activation" else None)


def saturating_cause(trace: Trace) -> Cause | None:
    """Two or more saturating hidden layers and a gradient that shrinks 100x towards the input."""
    stack = saturating_stack(trace)
    layers = trace.trainable_layers
    if len(stack) < 2 or len(layers) < 3:
        return None
    first = window(trace.series(f"L{layers[0].index}.grad", "norm"), 0.5)
    last = window(trace.series(f"L{layers[-1].index}.grad", "norm"), 0.5)
    if not len(first) or not len(last) or float(np.median(last)) <= 0:
        return None
    ratio = float(np.median(first)) / float(np.median(last))
    if ratio >= 1e-2:
        return None
    setters = [st for _, st in stack]
    also = [FixSpec("", NewValue('"relu"'), target=activation_arg_target(st)) for st in setters[1:]]
    return Cause("activation", activation_arg_target(setters[0]),
                 [FixSpec(f'Use activation "relu" on all {len(setters)} {setters[0].activation} layers', NewValue('"relu"'), also=also)],
                 {"saturating_layers": len(setters), "first_to_last_gradient_ratio": float(f"{ratio:.3g}")})


@dataclass
class CauseScope:
    """What the symptom is, for the one elimination order below.

    `diverging`: NaN or exploding values (never answered by a larger step, nor by a loss or
    activation change). `layer`: the symptom sits in this layer's units (dead or saturated):
    only what reaches units is eliminated (initialization, a rate 3x the default, inputs to the
    first layer) and the activation itself closes the list as `fallback`. `data_first`: the
    data explains it before anything else (unscaled inputs saturating the first layer; a
    loss that barely moves with tiny updates).
    """

    diverging: bool = False
    layer: LayerInfo | None = None
    data_first: bool = False
    fallback: FixSpec | None = None


def candidate_causes(trace: Trace, diverging: bool = False, scope: CauseScope | None = None) -> list[Cause]:
    """DeepDiagnosis-style elimination, keeping every match: each cause that could explain
    the symptom, most specific first (the first is the diagnosis; the counterfactual runs try
    the others in this order). The one place that orders causes; `CauseScope` says how a
    symptom changes it.

    Order: [the data, when it comes first], weights initialized far from a variance-preserving
    scale (or uncentered), a learning rate far above the optimizer's default, a slow-by-default
    optimizer, unscaled inputs/targets, a moderately high rate, a regression loss on a
    classifier, a stack of saturating activations, extreme momentum; the step size always
    closes the list (never raised for non-finite values), weak when nothing specific came
    before it. For units, the activation closes it instead, and only when nothing came before:
    with unscaled inputs or a bad rate, swapping ReLU for leaky ReLU treats the symptom.
    """
    scope = scope or CauseScope(diverging=diverging)
    units = scope.layer is not None
    out: list[Cause] = []
    xs, ys = x_scale_problem(trace), y_scale_problem(trace)
    first_layer = units and scope.layer.index == _first_trainable(trace)
    if scope.data_first and xs and (first_layer or not units):
        out.append(_data_cause("x", xs))
    elif scope.data_first and ys and not units:
        out.append(_data_cause("y", ys))
    if units and negative_bias(scope.layer) is not None:
        out.append(Cause("initialization", LayerArg(layer=scope.layer.index, arg="bias_initializer"),
                         [FixSpec('Use bias_initializer "zeros"', NewValue('"zeros"'))], {"initial_bias": negative_bias(scope.layer)}))
    bad = bad_init_layers(trace)
    if bad:
        layer, scale = bad[0]
        target, fixes = init_target_and_fixes(layer, [l for l, _ in bad])
        out.append(Cause("initialization", target, fixes, {"init_scale": round(scale, 4)}))
    raised = rate_raised(trace)
    if raised is not None:
        out.append(_raised_rate_cause(trace, *raised))
    cls, lr, ratio = lr_info(trace)
    if raised is not None:
        ratio = 1.0  # the fit trained well at its starting rate: the raise is the suspect, not that rate
    if lr is not None and ratio >= (3 if units else 10):
        target, fixes = lr_target_and_fixes(trace, "down")
        out.append(Cause("learning_rate", target, fixes, {"learning_rate": lr} if units else {"learning_rate": lr, "default_learning_rate": DEFAULT_LR.get(cls, 0.001)}))
    if units:
        if xs and (first_layer or scope.data_first) and not (scope.data_first and first_layer):
            out.append(_data_cause("x", xs))
        if not out and scope.fallback is not None:
            out.append(Cause("activation", LayerArg(layer=scope.layer.index, arg="activation"), [scope.fallback], {}, strong=False))
        return out
    out += _training_causes(trace, scope.diverging, xs, ys, cls, lr, ratio)
    if not any(c.root == "learning_rate" for c in out):
        # Nothing about the step size yet: it is the usual suspect; its direction
        # follows how far weights move per step. Non-finite or diverging values are
        # never answered by a larger step.
        med = median_log_update_ratio(trace)
        direction = "down" if scope.diverging or (med is not None and med > -1.5) else "up"
        target, fixes = lr_target_and_fixes(trace, direction)
        out.append(Cause("learning_rate", target, fixes, {"learning_rate": lr}, strong=False))
    return _distinct(out)


def _raised_rate_cause(trace: Trace, start: float, raised: float, epoch: int) -> Cause:
    """The rate rose during the fit: what raised it is blamed (its function's statement, or
    the growth setting of a schedule object), else the optimizer's rate as given."""
    ev = {"learning_rate_at_start": start, "learning_rate": raised, "raised_at_epoch": epoch + 1}
    schedules = trace.fit.schedules if trace.fit is not None else []
    ranked = sorted(schedules, key=lambda s: ("callback", "callback_class", "schedule").index(s.kind) if s.kind in
                    ("callback", "callback_class", "schedule") else 9)
    if not ranked:
        target, _ = lr_target_and_fixes(trace, "down")
        return Cause("learning_rate", target, [], ev)
    found = ranked[0]
    ev["schedule"] = found.name
    if found.code is None and found.config.get("decay_rate", 0) > 1:
        return Cause("learning_rate", ScheduleTarget(found, arg="decay_rate", position=2),
                     [FixSpec("Use decay_rate=0.96 (below 1, the rate decays)", NewValue("0.96"))], ev)
    return Cause("learning_rate", ScheduleTarget(found), [], ev)


def _training_causes(trace: Trace, diverging: bool, xs: dict | None, ys: dict | None, cls: str | None, lr: float | None, ratio: float) -> list[Cause]:
    """The rest of the order for a whole run (after initialization and a far too high rate)."""
    out: list[Cause] = []
    if cls in SLOW_BY_DEFAULT and lr is not None and abs(ratio - 1.0) < 1e-6:
        target, fixes = optimizer_target_and_fixes(trace)
        out.append(Cause("optimizer", target, fixes, {"optimizer": cls, "learning_rate": lr}))
    if xs:
        out.append(_data_cause("x", xs))
    if ys:
        out.append(_data_cause("y", ys))
    if lr is not None and 3 < ratio < 10:
        target, fixes = lr_target_and_fixes(trace, "down")
        out.append(Cause("learning_rate", target, fixes, {"learning_rate": lr}))
    loss_cause = classification_with_regression_loss(trace)
    if loss_cause is not None and not diverging:
        out.append(loss_cause)
    sat = saturating_cause(trace) if not diverging else None
    if sat is not None:
        out.append(sat)
    opt = trace.optimizer
    if opt is not None and (opt.config.get("momentum") or 0) >= 0.95:
        out.append(Cause("optimizer", OptimizerArg(arg="momentum"), [FixSpec("Use momentum 0.9", NewValue("0.9"))], {"momentum": opt.config.get("momentum")}))
    return out


def negative_bias(layer: LayerInfo) -> float | None:
    """The constant a ReLU-like layer's biases start at when it is clearly negative: every unit whose
    pre-activation is smaller than it starts dead and gets no gradient to come back."""
    init = layer.bias_initializer or {}
    value = (init.get("config") or {}).get("value")
    if layer.activation in RELU_LIKE and init.get("class") == "Constant" and isinstance(value, (int, float)) and value <= -0.5:
        return float(value)
    return None


def _data_cause(which: str, problem: dict) -> Cause:
    target, fixes = data_target_and_fixes(which)
    return Cause("data_normalization", target, fixes, dict(problem))


def _first_trainable(trace: Trace) -> int | None:
    t = trace.trainable_layers
    return t[0].index if t else None


def _distinct(causes: list[Cause]) -> list[Cause]:
    """Each (root cause, source element) once, in the order given."""
    seen: set[tuple] = set()
    out = []
    for c in causes:
        key = (c.root, *element(c.target))
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def alternatives(causes: list[Cause]) -> list[Alternative]:
    """The causes after the chosen one, as a finding carries them."""
    return [Alternative(c.root, c.target, c.fixes, dict(c.evidence)) for c in causes]
