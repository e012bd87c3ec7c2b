"""NaN/Inf: where the first non-finite value is born, and why."""

from __future__ import annotations

import math
import re

from ..findings import Alternative, CodeTarget, Feed, Finding, FixSpec, Guard, LayerArg, NewValue, NonfiniteData, SwapParams, target_layer
from ..trace import CodeLocation, Trace
from .setup import layer_label, loss_family, lr_info
from .causes import alternatives, candidate_causes
from ..rules import rule
from .heads import output_head

NAN_IN_INPUTS = rule(
    "nan-in-inputs", "training", "error", "nan_inf", "The training inputs contain NaN/Inf before any step.",
    details="The range is the operation that made them (a division by a spread that is zero for a constant column, a log "
            "of zero), followed back from the array given to fit through the statements and helpers that computed it; the "
            "fix guards it. Where no such operation is found, the statement that last assigned the array.",
    causes=("data_normalization",))
NAN_IN_CODE = rule(
    "nan-in-custom-code", "training", "error", "nan_inf",
    "The first NaN/Inf is born inside user code (a custom layer's `call`, a `Lambda`, the model's `call()`) while its inputs were finite.",
    details="The range is the risky operation (log, sqrt, division, pow); the fix guards it with an epsilon, the way Keras' own "
            "losses do (see [Fixes that keep the whole script right](#fixes-that-keep-the-whole-script-right)).",
    causes=("numerical_operation",))
NAN_IN_LOSS = rule(
    "nan-in-custom-loss", "training", "error", "nan_inf",
    "The first NaN/Inf is born inside a custom loss while the model's outputs were finite.",
    details="The guard clamps the prediction where it enters the log, or clips a probability into [1e-7, 1 - 1e-7]; when the "
            "labels are classes but the output layer emits no probabilities, the output activation comes with it, as one fix. "
            "A loss whose parameters are declared predictions first (`def loss(y_pred, y_true)`) gets the labels where it "
            "expects predictions, since Keras calls `loss(y_true, y_pred)`: a guard would only hide that, so the parameters "
            "are swapped first (on their line) and the guard is the alternative the experiment tries next.",
    causes=("loss", "numerical_operation"))
LOSS_UNBOUNDED = rule(
    "loss-unbounded-below", "training", "error", "nan_inf",
    "A custom loss that started positive went below zero before the values became NaN/Inf: a loss without a minimum is pushed "
    "down until the values overflow.",
    details="A loss must be bounded below (a cross-entropy by 0); one that can go negative has a weight outside its range (a "
            "class weight `alpha` above 1 makes `1 - alpha` negative) or a wrong sign. The range is the numbers the loss "
            "computes with: the parameters of the function that made it (a loss factory's), else its signature. Guarding "
            "its log would only hide the NaN (the experiment tries it: a loss that still goes below zero is not healed); a "
            "smaller step would only delay it.",
    causes=("loss",))
# Parameter names that say "predictions" or "labels" (a loss' first two parameters).
_PREDICTION_NAME = re.compile(r"pred|logit|output|^out$|hat|^p$|^yp$", re.I)
_LABEL_NAME = re.compile(r"true|target|label|truth|actual|^gt$|^y$|^yt$", re.I)
NAN_INF = rule(
    "nan-inf", "training", "error", "nan_inf",
    "The first NaN/Inf in forward values, gradients, weights or loss, with the layer and step where it appeared.",
    details="The root cause is found by elimination: initial weight scale, learning rate far above the optimizer's default, a "
            "slow-by-default optimizer, unscaled inputs or targets.",
    causes=("initialization", "learning_rate", "optimizer", "data_normalization"), traits=frozenset({"diverging"}))

_ORDER = ("pre", "out", "grad", "w")
# The locator rewrites the risky operation it finds (log, sqrt, division) with an epsilon guard.
GUARD = FixSpec("Guard the operation against zero/negative inputs", Guard("operand"))
_WHERE = {"pre": "pre-activation", "out": "forward output", "grad": "gradient", "w": "weights"}


def step_has_nonfinite(step) -> bool:
    loss = step.get("loss", "loss")
    if loss is not None and not math.isfinite(loss):
        return True
    return any(v.get("nonfinite", 0.0) > 0 for k, v in step.values.items() if "." in k and k.rsplit(".", 1)[1] in _ORDER)


def first_nonfinite(trace: Trace) -> tuple[int, str, int | None] | None:
    """(step position, kind, layer index) of the first non-finite value, forward before backward."""
    for pos, step in enumerate(trace.steps):
        hits: list[tuple[int, int, str]] = []
        for key, vals in step.values.items():
            if "." not in key:
                continue
            layer_s, kind = key.split(".", 1)
            if kind in _ORDER and vals.get("nonfinite", 0.0) > 0:
                hits.append((_ORDER.index(kind) if kind in ("grad", "w") else 0, int(layer_s[1:]), kind))
        loss = step.get("loss", "loss")
        forward = sorted(h for h in hits if h[2] in ("pre", "out"))
        if forward:
            _, layer, kind = forward[0]
            pre_first = [h for h in forward if h[1] == layer and h[2] == "pre"]
            return pos, ("pre" if pre_first else kind), layer
        if loss is not None and loss != loss or loss in (float("inf"), float("-inf")):
            return pos, "loss", None
        if hits:
            backward = sorted(hits, key=lambda h: (h[0], -h[1] if h[2] == "grad" else h[1]))
            _, layer, kind = backward[0]
            return pos, kind, layer
    return None


def detect_nonfinite(trace: Trace) -> list[Finding]:
    x = trace.fit.x if trace.fit else None
    if x and (x.get("nonfinite") or 0) > 0:
        return [NAN_IN_INPUTS.finding(
            f"{x['nonfinite']:.1%} of the input values are NaN/Inf before training starts.",
            NonfiniteData(arg="x", position=0),
            evidence={"nonfinite_fraction": x["nonfinite"]},
            fixes=[FixSpec("Make the operation that produces the NaN/Inf safe (a zero divisor, a log of zero, a mean over missing values)", Guard("operand")),
                   FixSpec("Replace NaN/Inf inputs by 0 (wherever the model gets them)", Feed("nan_to_num"))],
        )]
    hit = first_nonfinite(trace)
    if hit is None:
        return []
    pos, kind, layer_idx = hit
    step = trace.steps[pos]
    where = "the loss" if kind == "loss" else f"the {_WHERE[kind]} of {layer_label(trace.layers[layer_idx])}"
    observed = {"epoch": step.epoch, "step": step.step, "global_step": step.g, "layer": layer_idx, "where": kind}
    evidence = {"first_nonfinite": where, "epoch": step.epoch + 1, "step": step.step, "global_step": step.g}
    head = f"NaN/Inf first appeared in {where} at epoch {step.epoch + 1}, step {step.step}"

    unbounded = _unbounded_custom_loss(trace, pos)
    if unbounded is not None:
        code, start, low, low_epoch = unbounded
        free = code.free
        return [LOSS_UNBOUNDED.finding(
            f"{head}; before it, the custom loss '{code.function}' went below zero ({low:.4g} at epoch {low_epoch + 1}) after "
                f"starting at {start:.4g}: a loss with no minimum is pushed down until the values overflow"
                + (f" (it computes with {', '.join(f'{k}={v:g}' for k, v in free.items())})" if free else "") + ".",
            CodeTarget(code=code, part="hyperparameters"),
            evidence={**evidence, "loss_start": round(start, 4), "loss_min": round(low, 4), **{f"loss_{k}": v for k, v in free.items()}},
            observed=observed,
            fixes=[],
            # A smaller step only delays the overflow of a loss without a minimum: not a candidate.
            alternatives=[Alternative("numerical_operation", CodeTarget(code=code), [_loss_guard(trace)])],
        )]
    # A value born inside user code: a custom layer's call(), a Lambda, the model's call().
    culprit = _risky_code(trace, pos, kind, layer_idx)
    if culprit is not None:
        where_code, code, idx = culprit
        return [NAN_IN_CODE.finding(
            f"{head}: an operation in {where_code} ({', '.join(code.risky or ['its computation'])}) produced it"
                + (" while its inputs and weights were finite." if kind in ("pre", "out") and idx == layer_idx else
                ", and the non-finite values spread from there."),
            CodeTarget(layer=idx, code=code),
            layer=idx,
            evidence=evidence,
            observed=observed,
            fixes=[GUARD],
            # What else the run shows (a rate far above the default, a bad initialization, unscaled data): the
            # experiment decides between the guard and them, and prefers what trains better when both heal.
            alternatives=alternatives([c for c in candidate_causes(trace, diverging=True) if c.strong]),
        )]
    if _inputs_went_nonfinite(trace, pos, kind, layer_idx):
        first_batch = step.g == trace.steps[0].g
        when = "before any update and with finite weights" if first_batch else "with finite weights, after a step whose values were calm"
        return [NAN_IN_INPUTS.finding(
            f"{head}, {when}: the batches fed to fit carry NaN/Inf.",
            NonfiniteData(arg="x", position=0),
            evidence={**evidence, "seen_in": "the first batch" if first_batch else f"batch {step.g + 1}"},
            observed=observed,
            fixes=[FixSpec("Make the operation that produces the NaN/Inf safe (a zero divisor, a log of zero, a mean over missing values)", Guard("operand"))],
        )]
    if kind == "loss" and trace.compile is not None:
        loss = trace.compile.loss
        code = trace.compile.loss_code
        if loss_family(trace) == "custom" and code is not None:
            swapped = swapped_loss_params(code)
            if swapped is not None:
                pred, true = swapped
                return [NAN_IN_LOSS.finding(
                    f"{head}, while the model outputs were finite, in the custom loss '{loss.get('name')}': it declares ({pred}, {true}) "
                    f"but Keras calls a loss as loss(y_true, y_pred), so '{pred}' holds the labels and '{true}' the predictions.",
                    CodeTarget(code=code, part="params"),
                    root_cause="loss",
                    evidence={**evidence, "parameters": [pred, true]},
                    observed=observed,
                    fixes=[FixSpec(f"Swap the parameters: ({true}, {pred}), as Keras passes them", SwapParams())],
                    alternatives=[Alternative("numerical_operation", CodeTarget(code=code), [_loss_guard(trace)])],
                )]
            return [NAN_IN_LOSS.finding(
                f"{head}, while the model outputs were finite: an operation in the custom loss '{loss.get('name')}' produced it.",
                CodeTarget(code=code),
                root_cause="numerical_operation",
                evidence=evidence,
                observed=observed,
                fixes=[_loss_guard(trace)],
            )]
    causes = candidate_causes(trace, diverging=True)
    cause = causes[0]
    evidence.update(cause.evidence)
    growth = _grad_growth(trace, pos)
    if growth:
        evidence["gradient_norm_growth"] = growth
    return [NAN_INF.finding(
        f"{head}.",
        cause.target,
        root_cause=cause.root,
        names_cause=True,
        layer=target_layer(cause.target) if target_layer(cause.target) is not None else layer_idx,
        evidence=evidence,
        observed=observed,
        fixes=cause.fixes,
        alternatives=alternatives(causes[1:]),
    )]


# A first layer whose pre-activations reached this size was diverging: its NaN may be its own overflow.
_CALM_PREACTIVATION = 1e4
_STEADY_WEIGHTS = 10.0  # the first layer's weight norm may grow this much between two recorded steps


def _inputs_went_nonfinite(trace: Trace, pos: int, kind: str, layer_idx: int | None) -> bool:
    """Non-finite values first in the first weighted layer's forward pass, its weights finite,
    and either at the very first step (nothing was updated yet) or after a calm step (that
    layer's pre-activations moderate, the loss finite): they came in with the data (a generator
    or dataset whose batches the probe does not see as arrays, one that goes bad late)."""
    if kind not in ("pre", "out") or layer_idx is None or not trace.steps:
        return False
    first = next((l.index for l in trace.layers if l.n_params > 0), None)
    step = trace.steps[pos]
    weights_finite = all(v.get("nonfinite", 0) == 0 for k, v in step.values.items() if k.endswith(".w"))
    if layer_idx != first or not weights_finite:
        return False
    if pos == 0:
        return step.g == 0 and not trace.continues
    before = trace.steps[pos - 1]
    pre = before.values.get(f"L{first}.pre") or before.values.get(f"L{first}.out")
    loss = before.get("loss", "loss")
    calm = pre is not None and max(abs(pre.get("min", 0.0)), abs(pre.get("max", 0.0))) < _CALM_PREACTIVATION
    # Weights that jumped since (steps between two sampled ones) could overflow the layer themselves.
    w_now, w_then = step.values.get(f"L{first}.w", {}).get("norm"), before.values.get(f"L{first}.w", {}).get("norm")
    steady = w_now is not None and w_then is not None and 0 < w_then and w_now < _STEADY_WEIGHTS * w_then
    return calm and steady and loss is not None and math.isfinite(loss) and not step_has_nonfinite(before)


def _unbounded_custom_loss(trace: Trace, upto: int) -> tuple[CodeLocation, float, float, int] | None:
    """(the custom loss' code, its first loss, its lowest, the epoch of the lowest) when a custom
    loss that started positive went clearly below zero before step `upto`."""
    code = trace.compile.loss_code if trace.compile is not None else None
    if loss_family(trace) != "custom" or code is None:
        return None
    seen = [(st.get("loss", "loss"), st.epoch) for st in trace.steps[:upto]]
    seen = [(v, e) for v, e in seen if v is not None and math.isfinite(v)]
    if len(seen) < 3:
        return None
    first = sorted(v for v, _ in seen[:5])[len(seen[:5]) // 2]
    low, low_epoch = min(seen)
    if first <= 0 or low >= -0.01 * first:
        return None
    return code, first, low, low_epoch


def swapped_loss_params(code: CodeLocation) -> tuple[str, str] | None:
    """(first, second) parameter names of a loss declared predictions first, labels second."""
    params = code.params
    if len(params) < 2:
        return None
    first, second = params[0], params[1]
    if _PREDICTION_NAME.search(first) and not _LABEL_NAME.search(first) and _LABEL_NAME.search(second) and not _PREDICTION_NAME.search(second):
        return first, second
    return None


def _loss_guard(trace: Trace) -> FixSpec:
    """The guard of a custom loss, in the convention of Keras' own losses: the prediction
    clipped into [eps, 1 - eps] before a log when it is a probability. When the labels are
    classes but the output layer does not emit probabilities, the guard alone would turn
    NaN into a meaningless (negative) loss: the output activation comes with it, one fix."""
    head = output_head(trace)
    y = trace.fit.y if trace.fit else None
    if head is None:
        return GUARD
    if head.activation in ("softmax", "sigmoid"):
        return FixSpec("Clip the predictions into [1e-7, 1 - 1e-7] before the log (as Keras' losses do)", Guard("probability"))
    units = head.units_layer.units or 1
    classes = bool(y) and (y.get("one_hot") or (y.get("integer_valued") and (y.get("n_unique") or 99) <= max(units, 2)))
    if not classes or head.activation not in ("linear", "relu") or head.where != "layer" or head.act_layer is not head.units_layer:
        return GUARD
    act = "sigmoid" if units == 1 else "softmax"
    return FixSpec(f"Use a {act} output and clip the predictions into [1e-7, 1 - 1e-7] before the log", Guard("probability"),
                   also=[FixSpec("", NewValue(f'"{act}"'), target=LayerArg(layer=head.units_layer.index, arg="activation"))])


def _risky_code(trace: Trace, pos: int, kind: str, layer_idx: int | None) -> tuple[str, CodeLocation, int | None] | None:
    """User code with an operation that can create NaN/Inf from finite values (log, sqrt,
    division, pow, exp), when the non-finite values start there or downstream of it and
    training did not diverge first (a diverging run is the learning rate's, not the op's)."""
    candidates: list[tuple[int, str, CodeLocation]] = []
    for layer in trace.layers:
        if layer.call_code and layer.call_code.risky and (layer.custom or layer.cls == "Lambda"):
            candidates.append((layer.index, f"{layer_label(layer)}'s {'function' if layer.cls == 'Lambda' else 'call()'}", layer.call_code))
    if trace.model_call_code and trace.model_call_code.risky:
        candidates.append((-1, "the model's call()", trace.model_call_code))
    if not candidates:
        return None
    if kind in ("pre", "out") and layer_idx is not None:
        here = [c for c in candidates if c[0] == layer_idx]
        prev_weights_ok = pos == 0 or all(v.get("nonfinite", 0) == 0 for k, v in trace.steps[pos - 1].values.items() if k.endswith(".w"))
        if here and prev_weights_ok:
            return here[0][1], here[0][2], layer_idx
    _, _, ratio = lr_info(trace)
    growth = _grad_growth(trace, pos) or 1.0
    if ratio >= 10 or growth >= 10:
        return None
    # The op at or before the first layer that shows the values, else any.
    before = [c for c in candidates if layer_idx is None or c[0] <= layer_idx]
    idx, label, code = max(before, key=lambda c: c[0]) if before else candidates[0]
    return label, code, (idx if idx >= 0 else None)


def _grad_growth(trace: Trace, upto: int) -> float | None:
    import numpy as np

    norms = []
    for step in trace.steps[: upto + 1]:
        total = [v["norm"] for k, v in step.values.items() if k.endswith(".grad") and np.isfinite(v.get("norm", np.nan))]
        if total:
            norms.append(float(np.sqrt(np.sum(np.square(total)))))
    if len(norms) < 2 or norms[0] <= 0:
        return None
    return round(max(norms) / norms[0], 2)
