"""Symptoms inside the network while it trains: exploding/vanishing gradients,
dead ReLUs, saturated sigmoid/tanh, weights that do not move or move too fast,
bad initial scale. Each names the layer where the symptom starts."""

from __future__ import annotations

import numpy as np

from ..findings import Finding, FixSpec, Layer, NewValue, target_layer
from ..trace import LayerInfo, Trace
from .setup import DEFAULT_LR, RELU_LIKE, SATURATING, SLOW_BY_DEFAULT, bad_init_layers, init_offset, layer_label, lr_info, median_log_update_ratio, window
from .causes import CauseScope, activation_arg_target, alternatives, candidate_causes, init_target_and_fixes, lr_target_and_fixes, optimizer_target_and_fixes, saturating_stack
from ..rules import Rule, rule
from .registry import runtime_detector
from .numerical import first_nonfinite
from .progress import Progress

_DIVERGING_CAUSES = ("initialization", "learning_rate", "optimizer", "data_normalization")
EXPLODING = rule(
    "exploding-gradients", "training", "error", "exploding_gradient",
    "Gradient norm grows >{gradient_growth:g}x (or weights >{weight_growth:g}x) during training; the layer where it starts is reported.",
    causes=_DIVERGING_CAUSES, thresholds={"gradient_growth": 1e3, "weight_growth": 100, "layer_growth": 100},
    traits=frozenset({"diverging", "established"}), fallback_rank=0)
VANISHING = rule(
    "vanishing-gradients", "training", "warning", "vanishing_gradient",
    "The first layer's gradient is <1/{ratio_inverse:g} of the last layer's (and tiny in absolute terms) while the model is not learning;",
    details="blamed on saturating activations, tiny initial weights, or depth.",
    causes=("activation", "initialization", "architecture"), thresholds={"ratio_inverse": 1000, "first_norm": 1e-4, "window": 0.5},
    traits=frozenset({"established"}), fallback_rank=5)
DEAD_RELU = rule(
    "dead-relu", "training", "warning", "dead_relu",
    "At least {dead_fraction:.0%} of a ReLU layer's units output 0 for every sample over the last {window:.0%} of training.",
    details="A warning when all of them are dead or the model fits poorly, else information.",
    causes=("initialization", "learning_rate", "data_normalization", "activation"), thresholds={"dead_fraction": 0.7, "window": 0.3},
    traits=frozenset({"established"}), fallback_rank=4)
SATURATED = rule(
    "saturated-activation", "training", "warning", "saturation",
    "More than {saturated_fraction:.0%} of a sigmoid/tanh layer's inputs are beyond +-5, where its gradient is about 0.",
    causes=("data_normalization", "initialization", "learning_rate", "activation"), thresholds={"saturated_fraction": 0.5, "window": 0.3},
    traits=frozenset({"established"}), fallback_rank=3)
BAD_INIT = rule(
    "bad-initialization", "training", "warning", "weight_scale",
    "Kernel std x sqrt(fan_in) at the first step is far from the ~1 of variance-preserving initializers (zeros, or huge).",
    details="A warning when the hidden layers start all-equal, far too small or uncentered, or training shows the symptom; else information.",
    causes=("initialization",), thresholds={"too_small": 0.02, "uncentered": 1.0})
_UPDATES = "Median log10(|dW|/|W|) per step is below {too_slow:g} (too slow) or above {too_fast:g} (too fast) while training fails."
SLOW_UPDATES = rule(
    "weights-barely-change", "training", "warning", "slow_updates", _UPDATES,
    causes=("learning_rate", "optimizer"), thresholds={"too_slow": -4.0, "too_fast": -0.7}, fallback_rank=2)
FAST_UPDATES = rule(
    "weights-change-too-fast", "training", "warning", "fast_updates", _UPDATES,
    causes=("learning_rate",), thresholds={"too_slow": -4.0, "too_fast": -0.7}, traits=frozenset({"diverging"}))
LR_TOO_HIGH = rule(
    "learning-rate-too-high", "training", "warning", "fast_updates",
    "The learning rate is at least {rate_ratio:g}x the optimizer's usual rate and the model fits the training data poorly (without diverging):",
    details="steps overshoot, the loss bounces, validation accuracy jumps between epochs. Fix: the usual rate.",
    causes=("learning_rate",), thresholds={"rate_ratio": 10}, traits=frozenset({"diverging"}))


def _grad_norm(trace: Trace, layer: LayerInfo) -> np.ndarray:
    return trace.series(f"L{layer.index}.grad", "norm")


@runtime_detector
def detect_exploding(trace: Trace, progress: Progress | None) -> list[Finding]:
    layers = trace.trainable_layers
    if not layers or len(trace.steps) < 5:
        return []
    total = np.sqrt(np.nansum(np.square(np.vstack([_grad_norm(trace, l) for l in layers])), axis=0))
    total = total[np.isfinite(total)]
    if len(total) < 5:
        return []
    base = float(np.median(total[:3]))
    peak = float(np.max(total))
    wn = [trace.series(f"L{l.index}.w", "norm") for l in layers]
    w_growth = max((float(np.nanmax(w) / max(w[0], 1e-12)) for w in wn if len(w) and np.isfinite(w[0])), default=1.0)
    # Ratios, not magnitudes: large targets give large but steady gradients.
    if not (base > 0 and (peak / base > EXPLODING["gradient_growth"] or (peak > 1e4 and peak / base > 100) or w_growth > EXPLODING["weight_growth"])):
        return []
    # Weights that grew while the loss fell a lot are learning, unless they grew without bound.
    if progress is not None and not progress.poor and progress.rel_improvement > 0.5 and w_growth < 1e3 and peak / base < 1e4:
        return []
    # Layer where it starts: the first layer (input side) whose gradient crosses 100x its start.
    start = None
    for l in layers:
        g = _grad_norm(trace, l)
        g = g[np.isfinite(g)]
        if len(g) >= 3 and g[0] > 0 and np.max(g) / g[0] > EXPLODING["layer_growth"]:
            start = l
            break
    start = start or layers[-1]
    causes = candidate_causes(trace, diverging=True)
    cause = causes[0]
    ev = dict(cause.evidence)
    ev.update({"gradient_norm_growth": round(peak / base, 1), "weight_norm_growth": round(w_growth, 1)})
    return [EXPLODING.finding(
        (f"Gradients explode (norm x{peak / base:.3g}, weights x{w_growth:.3g})" if peak / base > 100 else f"Training diverges: weights grow x{w_growth:.3g} (gradient norm x{peak / base:.3g})")
            + f" starting at {layer_label(start)}.",
        cause.target,
        root_cause=cause.root,
        names_cause=True,
        layer=target_layer(cause.target) if target_layer(cause.target) is not None else start.index,
        evidence=ev,
        fixes=cause.fixes,
        observed={"layer": start.index, "where": "grad"},
        confidence="strong" if cause.strong else "weak",
        alternatives=alternatives(causes[1:]),
    )]


@runtime_detector
def detect_vanishing(trace: Trace, progress: Progress | None) -> list[Finding]:
    layers = trace.trainable_layers
    if len(layers) < 3 or len(trace.steps) < 10:
        return []
    norms = {l.index: window(_grad_norm(trace, l), VANISHING["window"]) for l in layers}
    last = float(np.median(norms[layers[-1].index])) if len(norms[layers[-1].index]) else 0.0
    first = float(np.median(norms[layers[0].index])) if len(norms[layers[0].index]) else 0.0
    if last <= 0:
        return []
    ratio = first / last
    absolute = all(float(np.median(v)) < 1e-7 for v in norms.values() if len(v))
    if not ((ratio < 1 / VANISHING["ratio_inverse"] and first < VANISHING["first_norm"]) or absolute or (ratio < 1e-4)):
        return []
    if progress is not None and not progress.poor:
        return []
    # Where it starts: walking from the output, the first layer whose gradient is < 1% of the output layer's.
    start = next((l for l in reversed(layers[:-1]) if len(norms[l.index]) and float(np.median(norms[l.index])) / last < 1e-2), layers[0])
    ev = {"first_to_last_gradient_ratio": float(f"{ratio:.3g}"), "first_layer_gradient_norm": float(f"{first:.3g}")}
    return [_vanishing_cause(trace, start, ratio, ev)]


def _vanishing_cause(trace: Trace, start: LayerInfo, ratio: float, ev: dict) -> Finding:
    """Saturating activations first, then a bad initial scale; else the depth itself (weak)."""
    stack = saturating_stack(trace)
    if stack:
        setters = [st for _, st in stack]
        deepest = max((st for l, st in stack if l.index <= start.index), key=lambda st: st.index, default=setters[0])
        also = [FixSpec("", NewValue('"relu"'), target=activation_arg_target(st)) for st in setters if st is not deepest]
        title = 'Use activation "relu"' + (f" on all {len(setters)} {deepest.activation} layers" if also else "")
        return VANISHING.finding(
            f"Gradients vanish towards the input (first/last layer gradient ratio {ratio:.2g}), starting at {layer_label(start)}: "
                f"{len(setters)} {deepest.activation} layers squash the gradient; use relu.",
            activation_arg_target(deepest),
            root_cause="activation",
            layer=deepest.index,
            evidence=ev,
            fixes=[FixSpec(title, NewValue('"relu"'), also=also)],
            observed={"layer": start.index, "where": "grad"},
        )
    bad = bad_init_layers(trace)
    if bad:
        layer, scale = bad[0]
        target, fixes = init_target_and_fixes(layer, [l for l, _ in bad])
        ev["init_scale"] = round(scale, 4)
        return VANISHING.finding(
            f"Gradients vanish towards the input (ratio {ratio:.2g}); {layer_label(layer)} starts with weights at {scale:.2g}x a variance-preserving scale.",
            target,
            root_cause="initialization",
            layer=layer.index,
            evidence=ev,
            fixes=fixes,
            observed={"layer": start.index, "where": "grad"},
        )
    return VANISHING.finding(
        f"Gradients vanish towards the input (ratio {ratio:.2g}), starting at {layer_label(start)}.",
        Layer(layer=start.index),
        root_cause="architecture",
        layer=start.index,
        evidence=ev,
        fixes=[],
        observed={"layer": start.index, "where": "grad"},
        confidence="weak",
    )


@runtime_detector
def detect_dead_relu(trace: Trace, progress: Progress | None) -> list[Finding]:
    for l in trace.layers:
        if l.activation not in RELU_LIKE or l.is_output:
            continue
        dead = window(trace.series(f"L{l.index}.out", "dead_units"), DEAD_RELU["window"])
        if len(dead) < 3:
            continue
        frac = float(np.median(dead))
        if frac < DEAD_RELU["dead_fraction"]:
            continue
        severity = "warning" if (frac >= 0.99 or (progress is not None and progress.poor)) else "information"
        scope = CauseScope(layer=l, fallback=FixSpec('Use activation "leaky_relu"', NewValue('"leaky_relu"')))
        # The first dead layer starves everything after it.
        return [_unit_finding(trace, DEAD_RELU, f"{frac:.0%} of the units of {layer_label(l)} output 0 for every sample (dead ReLUs)",
                              scope, {"dead_unit_fraction": round(frac, 3)}, severity, "out")]
    return []


def _unit_finding(trace: Trace, r: Rule, what: str, scope: CauseScope, ev: dict, severity: str, where: str) -> Finding:
    """A symptom in one layer's units, blamed on the first cause of the elimination order;
    the others travel as alternatives for the experiments."""
    causes = candidate_causes(trace, scope=scope)
    cause, layer = causes[0], scope.layer
    return r.finding(
        f"{what}.",
        cause.target,
        root_cause=cause.root,
        names_cause=True,
        severity=severity,
        layer=target_layer(cause.target) if target_layer(cause.target) is not None else layer.index,
        evidence={**ev, **cause.evidence},
        fixes=cause.fixes,
        observed={"layer": layer.index, "where": where},
        confidence="strong" if cause.strong else "weak",
        alternatives=alternatives(causes[1:]),
    )


@runtime_detector
def detect_saturation(trace: Trace, progress: Progress | None) -> list[Finding]:
    for l in trace.layers:
        if l.activation not in SATURATING:
            continue
        if l.is_output and (progress is None or not progress.stalled):
            continue
        sat = window(trace.series(f"L{l.index}.pre", "sat5"), SATURATED["window"])
        if len(sat) < 3 or float(np.median(sat)) <= SATURATED["saturated_fraction"]:
            continue
        frac = float(np.median(sat))
        severity = "warning" if progress is None or progress.poor else "information"
        scope = CauseScope(layer=l, data_first=True, fallback=FixSpec('Use activation "relu"', NewValue('"relu"')))
        return [_unit_finding(trace, SATURATED, f"{frac:.0%} of the inputs of the {l.activation} in {layer_label(l)} are beyond +-5, where its gradient is ~0",
                              scope, {"saturated_fraction": round(frac, 3), "threshold": "|x| > 5"}, severity, "pre")]
    return []


@runtime_detector
def detect_bad_init(trace: Trace, progress: Progress | None) -> list[Finding]:
    out = []
    if trace.continues:  # weights trained by an earlier fit are not an initialization
        return out
    bad = bad_init_layers(trace)
    for layer, scale in bad:
        hidden = not layer.is_output
        symptom = (progress is not None and progress.poor) or _unit_trouble(trace)
        if ((scale < BAD_INIT["too_small"] or (init_offset(trace, layer) or 0) > BAD_INIT["uncentered"]) and hidden) or symptom:
            severity = "warning"
        else:
            severity = "information"
        target, fixes = init_target_and_fixes(layer, [l for l, _ in bad])
        offset = init_offset(trace, layer)
        if scale < 1e-6:
            desc = "all-equal (e.g. zeros)"
        elif offset is not None and offset > BAD_INIT["uncentered"] and BAD_INIT["too_small"] <= scale <= 6.0:
            desc = f"uncentered (weights mostly of one sign: |mean| = {offset:.2g}x their std)"
        else:
            desc = "too small" if scale < 1 else "too large"
        others = f" ({len(bad) - 1} more layer(s) start the same way; the fix changes all of them)" if len(bad) > 1 else ""
        out.append(BAD_INIT.finding(
            f"The kernel of {layer_label(layer)} starts {desc}: std x sqrt(fan_in) = {scale:.3g} (variance-preserving inits give ~1){others}.",
            target,
            severity=severity,
            layer=layer.index,
            evidence={"init_scale": round(scale, 5)},
            fixes=fixes,
            observed={"layer": layer.index, "where": "w"},
        ))
        break
    return out


def _unit_trouble(trace: Trace) -> bool:
    """Saturated or dead units in any hidden layer over the last window."""
    for l in trace.layers:
        if l.is_output:
            continue
        sat = window(trace.series(f"L{l.index}.pre", "sat5"), SATURATED["window"])
        dead = window(trace.series(f"L{l.index}.out", "dead_units"), DEAD_RELU["window"])
        if (l.activation in SATURATING and len(sat) and float(np.median(sat)) > SATURATED["saturated_fraction"]) or (
                l.activation in RELU_LIKE and len(dead) and float(np.median(dead)) > DEAD_RELU["dead_fraction"]):
            return True
    return False


@runtime_detector
def detect_update_ratio(trace: Trace, progress: Progress | None) -> list[Finding]:
    """Weights that barely move (too slow) or jump (too fast) relative to their norm."""
    if progress is None or len(trace.steps) < 10 or first_nonfinite(trace) is not None:
        return []
    med = median_log_update_ratio(trace)
    if med is None:
        return []
    cls, lr, ratio = lr_info(trace)
    ev = {"median_log10_update_ratio": round(med, 2), "learning_rate": lr, "optimizer": cls}
    if med < SLOW_UPDATES["too_slow"] and progress.poor and ratio < 3:
        if cls in SLOW_BY_DEFAULT and (lr is None or abs(ratio - 1) < 1e-6):
            target, fixes = optimizer_target_and_fixes(trace)
            return [SLOW_UPDATES.finding(
                f"Weights change by 10^{med:.1f} of their norm per step (healthy: 10^-4..10^-1): {cls} at its default rate is too slow for this model.",
                target,
                root_cause="optimizer",
                evidence=ev,
                fixes=fixes,
            )]
        target, fixes = lr_target_and_fixes(trace, "up")
        explicit = lr is not None and ratio <= 0.5
        return [SLOW_UPDATES.finding(
            f"Weights change by 10^{med:.1f} of their norm per step (healthy: 10^-4..10^-1): the learning rate {lr:g} is too low.",
            target,
            root_cause="learning_rate",
            evidence=ev,
            fixes=fixes,
            confidence="strong" if explicit else "weak",
        )]
    if med > FAST_UPDATES["too_fast"] and (progress.poor or progress.oscillation > 0.3):
        target, fixes = lr_target_and_fixes(trace, "down")
        return [FAST_UPDATES.finding(
            f"Weights change by 10^{med:.1f} of their norm per step (healthy: 10^-4..10^-1): the learning rate {lr:g} is too high.",
            target,
            evidence=ev,
            fixes=fixes,
        )]
    if lr is not None and ratio >= LR_TOO_HIGH["rate_ratio"] and progress.poor and not progress.stalled:
        # Far above the optimizer's usual rate and fitting poorly: steps overshoot the minimum
        # (the loss bounces instead of settling), even where weights do not blow up.
        target, fixes = lr_target_and_fixes(trace, "down")
        swing = _val_swing(trace)
        ev.update({"default_learning_rate": DEFAULT_LR.get(cls, 0.001), "train_accuracy": progress.accuracy, "validation_accuracy_swing": swing})
        return [LR_TOO_HIGH.finding(
            f"The learning rate {lr:g} is {ratio:.0f}x {cls}'s usual {DEFAULT_LR.get(cls, 0.001):g} and the model fits poorly"
                + f" ({_fit_so_far(progress)}" + (f", validation accuracy jumps by {swing:.2f} between epochs)" if swing else ")")
                + ": steps overshoot the minimum.",
            target,
            evidence=ev,
            fixes=fixes,
        )]
    return []


def _fit_so_far(progress: Progress) -> str:
    if progress.accuracy is not None:
        return f"training accuracy {progress.accuracy:.2f}"
    return f"loss {progress.initial_loss:.4g} -> {progress.final_loss:.4g}"


def _val_swing(trace: Trace) -> float | None:
    """Median epoch-to-epoch change of validation accuracy over the second half of the run."""
    from .curves import VAL_ACCURACY, first_series

    v = first_series(trace, VAL_ACCURACY)
    if len(v) >= 4:
        return round(float(np.median(np.abs(np.diff(v[len(v) // 2 - 1:])))), 3)
    return None


__all__ = ["detect_exploding", "detect_vanishing", "detect_dead_relu", "detect_saturation", "detect_bad_init", "detect_update_ratio", "DEFAULT_LR"]
