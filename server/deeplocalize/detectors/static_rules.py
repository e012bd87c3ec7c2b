"""Rules checked as soon as `compile`/`fit` are called and the model is built:
output activation vs loss vs labels. They fire before any training step."""

from __future__ import annotations

from typing import Any, Callable

import math

from ..findings import Finding, FixSpec, Target
from ..trace import Trace
from .common import ACTIVATION_RANGE, RELU_LIKE, from_logits, layer_label, loss_family
from .heads import Head, activation_fix, activation_target, output_head


def _act_fix(trace: Trace, head: Head, new: str, why: str) -> tuple[Target, list[FixSpec]]:
    fix = activation_fix(trace, head, new, f"Use activation \"{new}\" on the output layer{why}")
    return activation_target(trace, head), [fix] if fix else []


def _where(head: Head) -> str:
    if head.where == "call":
        return f"the model's call() (applied to {layer_label(head.units_layer)})"
    if head.where == "lambda":
        return f"the Lambda {layer_label(head.act_layer)} after {layer_label(head.units_layer)}"
    if head.act_layer is not head.units_layer:
        return f"{layer_label(head.act_layer)} after {layer_label(head.units_layer)}"
    return f"the {layer_label(head.units_layer)}"


def _loss_fix(new: str) -> tuple[Target, list[FixSpec]]:
    return Target("compile_arg", arg="loss"), [FixSpec(f"Use loss \"{new}\"", new_value=f'"{new}"')]


def _multiclass_head_fix(trace: Trace, out: Any, n: int) -> FixSpec:
    """One fix that turns a one-unit sigmoid head into an n-way softmax classifier: the loss,
    the units and the activation change together (any one alone still fails)."""
    fix = FixSpec(f'Use loss "sparse_categorical_crossentropy" with {n} softmax output units', new_value='"sparse_categorical_crossentropy"')
    fix.also.append(FixSpec("", new_value=str(n), target=Target("layer_arg", layer=out.index, arg="units", position=0)))
    head = output_head(trace)
    act = activation_fix(trace, head, "softmax", "") if head is not None else None
    if act is not None and head is not None:
        act.target = activation_target(trace, head)
        fix.also.append(act)
    return fix


def _from_logits_on_probabilities(head: Any, act: str, add: Callable[..., None]) -> None:
    """from_logits=True on a softmax/sigmoid output. When a layer applies it, Keras 3 on
    TensorFlow sees the logits behind it and computes the loss from them anyway (with a
    warning): training is unaffected, so it is information; applied elsewhere it may not be."""
    declared = head.where == "layer"
    add("from-logits-on-probabilities", "information" if declared else "warning", "loss",
        f"The loss expects logits (from_logits=True) but the output layer already applies {act}"
        + ("; Keras computes this loss from the logits behind that activation anyway, so training is unaffected, but the setting says the opposite of what the model does." if declared else "."),
        Target("compile_arg", arg="loss"), [FixSpec("Set from_logits=False", new_value="False", arg="from_logits")], "loss_mismatch")


def check_output_and_loss(trace: Trace) -> list[Finding]:
    head = output_head(trace)
    family = loss_family(trace)
    if head is None or trace.compile is None or family in ("unknown",):
        return []
    out = head.act_layer
    y = trace.fit.y if trace.fit else None
    act = head.activation
    units = head.units
    findings: list[Finding] = []
    ev = {"output_activation": act, "output_units": units, "loss": trace.compile.loss.get("name"), "loss_family": family}
    if head.where != "layer":
        ev["activation_applied_in"] = head.where

    def add(code: str, severity: str, root: str, message: str, target: Target, fixes: list[FixSpec], symptom: str = "output_range") -> None:
        findings.append(Finding(code, severity, symptom, root, message, target, layer=out.index if target.layer is not None else None, evidence=dict(ev), fixes=fixes))

    logits = from_logits(trace)
    if units == 1 and act == "softmax":
        new = "sigmoid" if family in ("binary", "categorical", "sparse") else "linear"
        t, f = _act_fix(trace, head, new, "")
        add("softmax-single-unit", "error", "activation",
            f"softmax over a single unit always outputs 1.0, so {_where(head)} cannot learn; use {new}.", t, f)
        return findings
    if family in ("categorical", "binary") and act == "softmax" and y and y.get("multi_hot") and (units or 0) > 1:
        t = activation_target(trace, head)
        fix = activation_fix(trace, head, "sigmoid", 'Use a sigmoid output and loss "binary_crossentropy" (several labels per sample)')
        if fix is not None:
            fix.also = [FixSpec("", new_value='"binary_crossentropy"', target=Target("compile_arg", arg="loss"))] if family == "categorical" else []
        add("multi-label-softmax", "error", "activation",
            f"Samples carry several labels at once (up to {y.get('max_labels_per_row', '?'):g} per row), but {_where(head)} is a softmax, "
            "which makes the classes compete for one share of probability; a multi-label output needs sigmoid units and binary cross-entropy.",
            t, [fix] if fix else [])
        return findings
    if family in ("categorical", "sparse"):
        if units == 1:
            if family == "categorical":
                t, f = _loss_fix("binary_crossentropy")
                add("loss-single-unit-categorical", "error", "loss",
                    "categorical cross-entropy over a single output unit is always 0: nothing is learned. With one unit use binary_crossentropy.", t, f, "loss_mismatch")
                return findings
        if logits:
            if act in ("softmax", "sigmoid"):
                _from_logits_on_probabilities(head, act, add)
            return findings
        if act != "softmax" and units and units > 1:
            t, f = _act_fix(trace, head, "softmax", " (cross-entropy needs a probability distribution)")
            if head.where == "layer" and head.act_layer is head.units_layer:
                f.append(FixSpec("Keep the activation and compute the loss from logits", new_value="True", arg="from_logits", target=Target("compile_arg", arg="loss")))
            # Keras renormalizes non-negative outputs to sum to 1 before the log, so sigmoid
            # units still train (just unusually); negative or all-zero outputs do not.
            sev = "error" if act in RELU_LIKE or act == "linear" else ("information" if act in ("sigmoid", "hard_sigmoid", "softplus", "exponential") else "warning")
            add("output-not-distribution", sev, "activation",
                f"{family} cross-entropy expects probabilities, but {_where(head)} outputs values in "
                f"{_fmt_range(act)}: the loss is undefined or misleading.", t, f)
    elif family == "binary":
        if logits:
            if act == "sigmoid":
                _from_logits_on_probabilities(head, act, add)
            return findings
        if units and units > 2 and act == "softmax":
            new = "categorical_crossentropy" if y and y.get("one_hot") else "sparse_categorical_crossentropy"
            t, f = _loss_fix(new)
            add("binary-loss-multiclass", "error", "loss",
                f"binary cross-entropy on a {units}-way softmax treats each class as an independent yes/no; use {new}.", t, f, "loss_mismatch")
        elif act not in ("sigmoid", "softmax", "hard_sigmoid"):
            t, f = _act_fix(trace, head, "sigmoid", " (binary cross-entropy needs outputs in [0, 1])")
            add("output-not-probability", "error", "activation",
                f"binary cross-entropy expects probabilities in [0, 1], but {_where(head)} outputs values in {_fmt_range(act)}.", t, f)
    elif family == "regression":
        class_index = bool(y and y.get("integer_valued") and (units or 0) > 1 and len(y.get("shape") or []) == 1)
        if y and (y.get("one_hot") or class_index) and act == "softmax":
            new = "categorical_crossentropy" if y.get("one_hot") else "sparse_categorical_crossentropy"
            t, f = _loss_fix(new)
            # Trains, but slowly: a warning only once training confirms it (see diagnose()).
            add("regression-loss-on-classes", "warning", "loss",
                f"A regression loss ({trace.compile.loss.get('name')}) on a {units}-way softmax classifier gives vanishing gradients "
                f"once a class is wrong with confidence; use {new}.", t, f, "loss_mismatch")
        elif y and act == "sigmoid" and units == 1 and y.get("integer_valued") and y.get("n_unique") == 2 and y.get("min") == 0 and y.get("max") == 1:
            t, f = _loss_fix("binary_crossentropy")
            add("regression-loss-on-classes", "warning", "loss",
                f"A regression loss ({trace.compile.loss.get('name')}) on a sigmoid binary classifier: its gradient vanishes where the "
                "sigmoid saturates on a wrong answer; use binary_crossentropy.", t, f, "loss_mismatch")
        elif y and y.get("min") is not None:
            lo, hi = ACTIVATION_RANGE.get(act, (-math.inf, math.inf))
            if (y["min"] < lo - 1e-6 or y["max"] > hi + 1e-6) and (y.get("n_unique") or 0) > 2:
                t, f = _act_fix(trace, head, "linear", " (regression targets outside the activation's range)")
                add("output-range-targets", "error", "activation",
                    f"Targets span [{y['min']:.3g}, {y['max']:.3g}] but {_where(head)} can only output {_fmt_range(act)}.", t, f)
    return findings


def check_labels(trace: Trace) -> list[Finding]:
    """Labels vs loss vs output size: the shape and range mismatches that crash or silently mislead."""
    head = output_head(trace)
    y = trace.fit.y if trace.fit else None
    family = loss_family(trace)
    if head is not None and (not y or y.get("min") is None):
        return _check_observed_labels(trace, family)
    if head is None or not y or y.get("min") is None:
        return []
    out = head.units_layer
    findings: list[Finding] = []
    units = out.units or 0
    ev = {"label_min": y.get("min"), "label_max": y.get("max"), "label_shape": y.get("shape"), "output_units": units, "loss_family": family}
    shape = y.get("shape") or []
    one_dim = len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1)
    out_shape = (trace.output_layer.output_shape if trace.output_layer else None) or out.output_shape or []
    expected_rank = (len(shape) + 1 if one_dim else len(shape)) if family == "sparse" else max(len(shape), 2)
    if out_shape and shape and len(out_shape) > expected_rank:
        first = next((l for l in trace.layers if l.output_shape and len(l.output_shape) > expected_rank and l.cls in ("Dense", "EinsumDense")), out)
        findings.append(Finding(
            "output-rank-mismatch", "error", "shape_mismatch", "architecture",
            f"The model outputs shape {tuple(out_shape)} but the labels have shape {tuple(shape)}: {layer_label(first)} receives "
            f"a {len(first.output_shape or out_shape)}-D tensor (missing Flatten or pooling before the Dense layers?).",
            Target("layer", layer=first.index), layer=first.index, evidence={**ev, "output_shape": out_shape}, fixes=[],
        ))
        return findings
    if family == "categorical" and one_dim and y.get("integer_valued") and units > 1:
        findings.append(Finding(
            "labels-not-one-hot", "error", "loss_mismatch", "loss",
            f"categorical_crossentropy needs one-hot labels of width {units}, but the labels are class indices {tuple(shape)}; "
            "use sparse_categorical_crossentropy (or one-hot encode the labels).",
            Target("compile_arg", arg="loss"), evidence=ev,
            fixes=[FixSpec('Use loss "sparse_categorical_crossentropy"', new_value='"sparse_categorical_crossentropy"'),
                   FixSpec("One-hot encode the labels (wherever the model gets them)", feed="one_hot")],
        ))
    elif family == "sparse" and y.get("one_hot"):
        findings.append(Finding(
            "labels-one-hot-sparse", "error", "loss_mismatch", "loss",
            "sparse_categorical_crossentropy needs class indices, but the labels are one-hot; use categorical_crossentropy.",
            Target("compile_arg", arg="loss"), evidence=ev,
            fixes=[FixSpec('Use loss "categorical_crossentropy"', new_value='"categorical_crossentropy"')],
        ))
    elif family == "sparse" and one_dim and units > 1 and not y.get("integer_valued") and 0 < (y.get("n_unique") or 0) <= 2 * units:
        findings.append(Finding(
            "labels-not-class-indices", "error", "label_range", "labels",
            f"sparse_categorical_crossentropy needs integer class indices 0..{units - 1}, but the labels are fractions in "
            f"[{y['min']:.3g}, {y['max']:.3g}] (scaled like the inputs?): they are truncated to other classes.",
            Target("fit_data", arg="y", position=1), evidence=ev, fixes=[],
        ))
    elif family == "sparse" and one_dim and units > 1 and y["max"] >= units:
        if y["min"] >= 1 and int(y["max"]) == units:
            findings.append(Finding(
                "labels-off-by-one", "error", "label_range", "labels",
                f"Labels run from {y['min']:.0f} to {y['max']:.0f} but the {units} output units cover classes 0..{units - 1}: shift the labels to start at 0.",
                Target("fit_data", arg="y", position=1), evidence=ev,
                fixes=[FixSpec("Shift the labels to start at 0 (wherever the model gets them)", feed="labels_shift")],
            ))
        else:
            n = int(y["max"]) + 1
            findings.append(Finding(
                "output-units-too-few", "error", "label_range", "architecture",
                f"Labels go up to {y['max']:.0f} ({n} classes) but the {layer_label(out)} has only {units} units.",
                Target("layer_arg", layer=out.index, arg="units", position=0), layer=out.index, evidence=ev,
                fixes=[FixSpec(f"Use {n} output units", new_value=str(n))],
            ))
    elif family == "categorical" and len(shape) >= 2 and shape[-1] != units and units > 1:
        findings.append(Finding(
            "output-units-mismatch", "error", "label_range", "architecture",
            f"Labels are one-hot of width {shape[-1]} but the {layer_label(out)} has {units} units.",
            Target("layer_arg", layer=out.index, arg="units", position=0), layer=out.index, evidence=ev,
            fixes=[FixSpec(f"Use {shape[-1]} output units", new_value=str(shape[-1]))],
        ))
    elif family == "binary" and one_dim and units >= 2 and not y.get("one_hot"):
        findings.append(Finding(
            "binary-loss-label-shape", "error", "loss_mismatch", "loss",
            f"binary_crossentropy compares each output unit with a label, but the {layer_label(out)} has {units} units "
            f"and the labels are one class index per sample {tuple(shape)}; use sparse_categorical_crossentropy.",
            Target("compile_arg", arg="loss"), evidence=ev,
            fixes=[FixSpec('Use loss "sparse_categorical_crossentropy"', new_value='"sparse_categorical_crossentropy"')],
        ))
    elif family == "binary" and (y["min"] < 0 or y["max"] > 1):
        uniq = y.get("n_unique") or 0
        if uniq <= 2:
            findings.append(Finding(
                "labels-outside-unit-interval", "error", "label_range", "labels",
                f"binary_crossentropy needs labels in {{0, 1}}, but they are in [{y['min']:.3g}, {y['max']:.3g}].",
                Target("fit_data", arg="y", position=1), evidence=ev,
                fixes=[FixSpec("Map the labels to 0/1 (wherever the model gets them)", feed="labels_unit")],
            ))
        elif y.get("integer_valued") and units == 1:
            n = int(y["max"]) + 1
            findings.append(Finding(
                "binary-loss-multiclass-labels", "error", "label_range", "loss",
                f"Labels have {uniq} classes but the model is a binary classifier (1 sigmoid unit, binary_crossentropy).",
                Target("compile_arg", arg="loss"), evidence=ev,
                fixes=[_multiclass_head_fix(trace, out, n)],
            ))
    elif family in ("categorical", "sparse", "binary") and not y.get("integer_valued") and (y.get("n_unique") or 0) > 20 and not y.get("one_hot"):
        findings.append(Finding(
            "classification-loss-on-continuous", "error", "loss_mismatch", "loss",
            f"The targets are continuous ({y.get('n_unique')} distinct values) but the loss is a classification loss; use a regression loss.",
            Target("compile_arg", arg="loss"), evidence=ev, fixes=[FixSpec('Use loss "mse"', new_value='"mse"')],
        ))
    return findings


def _check_observed_labels(trace: Trace, family: str) -> list[Finding]:
    """Labels that come from a dataset or generator: only their range, as the first batches showed it."""
    rows = [st.values["y"] for st in trace.steps[:5] if "y" in st.values and not st.values["y"].get("nonfinite")]
    if not rows or family != "binary":
        return []
    lo, hi = min(r.get("min", 0.0) for r in rows), max(r.get("max", 0.0) for r in rows)
    if lo >= 0.0 and hi <= 1.0:
        return []
    return [Finding(
        "labels-outside-unit-interval", "error", "label_range", "labels",
        f"binary_crossentropy needs labels in {{0, 1}}, but the batches fed to fit carry labels in [{lo:.3g}, {hi:.3g}] "
        "(the loss goes negative or explodes).",
        Target("fit_data", arg="y", position=1), evidence={"label_min": lo, "label_max": hi, "seen_in": "first batches"}, fixes=[],
    )]


def check_static(trace: Trace) -> list[Finding]:
    found = check_labels(trace)
    seen = {(f.root_cause, f.target.kind, f.target.arg) for f in found}
    for f in check_output_and_loss(trace):
        if (f.root_cause, f.target.kind, f.target.arg) not in seen:
            found.append(f)
    return found


def _fmt_range(act: str) -> str:
    lo, hi = ACTIVATION_RANGE.get(act, (-math.inf, math.inf))
    f = lambda v: "-inf" if v == -math.inf else ("inf" if v == math.inf else f"{v:g}")  # noqa: E731
    return f"[{f(lo)}, {f(hi)}]"
