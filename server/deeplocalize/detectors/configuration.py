"""Rules checked as soon as `compile`/`fit` are called and the model is built:
output activation vs loss vs labels. They fire before any training step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import math
import re

from ..findings import CompileArg, Feed, Finding, FitData, FixSpec, Layer, LayerArg, NewValue, SetKwarg, Target, target_arg, target_layer
from ..rules import Rule, rule
from ..trace import Trace
from .setup import ACTIVATION_RANGE, RELU_LIKE, from_logits, layer_label, loss_family
from .heads import Head, activation_fix, activation_target, output_head


def _static(code: str, summary: str, causes: tuple, severity: str = "error", symptom: str = "output_range", **kw: Any) -> Rule:
    return rule(code, "static", severity, symptom, summary, causes=causes, **kw)


NOT_DISTRIBUTION = _static(
    "output-not-distribution",
    "Cross-entropy expects probabilities but the output layer's activation (relu, linear, tanh, ...) does not produce a distribution.",
    ("activation",), details="An error for relu/linear outputs; information for non-negative ones (sigmoid, softplus), which Keras "
    "renormalizes. Fix: `softmax` on the output layer, or `from_logits=True` on the loss.")
NOT_PROBABILITY = _static(
    "output-not-probability", "`binary_crossentropy` with an output activation other than sigmoid: outputs are not in [0, 1]. Fix: `sigmoid`.",
    ("activation",))
SOFTMAX_ONE_UNIT = _static(
    "softmax-single-unit", "`softmax` over one unit always outputs 1.0: nothing can be learned. Fix: `sigmoid` (classification) or linear.",
    ("activation",))
CATEGORICAL_ONE_UNIT = _static(
    "loss-single-unit-categorical", "Categorical cross-entropy over one output unit is identically 0. Fix: `binary_crossentropy`.",
    ("loss",), symptom="loss_mismatch")
BINARY_MULTICLASS = _static(
    "binary-loss-multiclass", "`binary_crossentropy` on a multi-class softmax. Fix: `categorical_crossentropy` / `sparse_categorical_crossentropy`.",
    ("loss",), symptom="loss_mismatch")
BINARY_MULTICLASS_LABELS = _static(
    "binary-loss-multiclass-labels", "Labels have more than two classes but the model is a one-unit binary classifier.",
    ("loss",), symptom="label_range", details="Fix (one change): the loss, the output units and softmax together.")
FROM_LOGITS = _static(
    "from-logits-on-probabilities", "The loss says `from_logits=True` but the model already ends in softmax/sigmoid.",
    ("loss",), severity="warning", symptom="loss_mismatch",
    details="When a layer applies that activation, Keras 3 on TensorFlow computes the loss from the logits behind it anyway (and "
    "warns), so training is unaffected: information (a re-run with the fix confirms it changes nothing). When the activation is "
    "applied elsewhere (a `Lambda`, the model's `call()`), probabilities may be squashed twice and learning slows: warning. "
    "Fix: `from_logits=False`.")
REGRESSION_ON_CLASSES = _static(
    "regression-loss-on-classes", "A regression loss (MSE, MAE) on a softmax classifier with one-hot or class-index labels.",
    ("loss",), severity="warning", symptom="loss_mismatch", traits=frozenset({"confirmed_by_training"}),
    details="It trains, but its gradient vanishes on confidently wrong classes: a warning only when training fits the data "
    "poorly, else information. Fix: a cross-entropy loss.")
MULTI_LABEL = _static(
    "multi-label-softmax", "Targets with several 1s in a row (multi-label) on a softmax output: the classes compete for one unit of probability,",
    ("activation",), details="so the model cannot say \"both\". Fix (one fix, two edits): sigmoid output units and `binary_crossentropy`.")
NOT_CLASS_INDICES = _static(
    "labels-not-class-indices", "`sparse_categorical_crossentropy` on labels that are not whole class indices",
    ("labels",), symptom="label_range", details="(e.g. labels divided by 255 together with the pixels): they are truncated to the "
    "wrong classes. Points at the line that last assigns the labels.")
CONTINUOUS = _static(
    "classification-loss-on-continuous", "A cross-entropy loss on continuous targets (more than {distinct:g} distinct values). Fix: a regression loss such as `mse`.",
    ("loss",), symptom="loss_mismatch", thresholds={"distinct": 20})
TARGETS_OUT_OF_RANGE = _static(
    "output-range-targets", "Regression targets lie outside what the output activation can produce (e.g. sigmoid for unbounded targets).",
    ("activation",), details="Fix: a linear output.")
NOT_ONE_HOT = _static(
    "labels-not-one-hot", "Integer class labels with `categorical_crossentropy` (Keras 3 raises a rank error).",
    ("loss",), symptom="loss_mismatch", details="Fix: `sparse_categorical_crossentropy`, or one-hot encode the labels.")
ONE_HOT_SPARSE = _static(
    "labels-one-hot-sparse", "One-hot labels with `sparse_categorical_crossentropy`. Fix: `categorical_crossentropy`.",
    ("loss",), symptom="loss_mismatch")
OFF_BY_ONE = _static(
    "labels-off-by-one", "Labels run 1..C while the output has C units (classes 0..C-1). Fix: shift the labels to start at 0.",
    ("labels",), symptom="label_range")
TOO_FEW_UNITS = _static(
    "output-units-too-few", "The output layer has fewer units than there are classes in the (class-index) labels. Fix: one unit per class.",
    ("architecture",), symptom="label_range")
UNITS_MISMATCH = _static(
    "output-units-mismatch", "The output layer's units differ from the width of the one-hot labels. Fix: one unit per class.",
    ("architecture",), symptom="label_range")
BINARY_LABEL_SHAPE = _static(
    "binary-loss-label-shape", "`binary_crossentropy` on an output with several units while the labels are one class index per sample",
    ("loss",), symptom="loss_mismatch", details="(Keras 3 raises a rank error). Fix: `sparse_categorical_crossentropy` (or one sigmoid unit).")
LABELS_NOT_01 = _static(
    "labels-outside-unit-interval", "Binary labels that are not 0/1 (e.g. -1/+1) for binary cross-entropy. Fix: map them to 0/1.",
    ("labels",), symptom="label_range")
RANK_MISMATCH = _static(
    "output-rank-mismatch", "The model's output has more dimensions than the labels (e.g. images fed to Dense layers without `Flatten`).",
    ("architecture",), symptom="shape_mismatch")


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
    return CompileArg(arg="loss"), [FixSpec(f"Use loss \"{new}\"", NewValue(f'"{new}"'))]


def _multiclass_head_fix(trace: Trace, out: Any, n: int) -> FixSpec:
    """One fix that turns a one-unit sigmoid head into an n-way softmax classifier: the loss,
    the units and the activation change together (any one alone still fails)."""
    fix = FixSpec(f'Use loss "sparse_categorical_crossentropy" with {n} softmax output units', NewValue('"sparse_categorical_crossentropy"'))
    fix.also.append(FixSpec("", NewValue(str(n)), target=LayerArg(layer=out.index, arg="units", position=0)))
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
    add(
        FROM_LOGITS,
        f"The loss expects logits (from_logits=True) but the output layer already applies {act}"
            + ("; Keras computes this loss from the logits behind that activation anyway, so training is unaffected, but the setting says the opposite of what the model does." if declared else "."),
        CompileArg(arg="loss"),
        [FixSpec("Set from_logits=False", SetKwarg("from_logits", "False"))],
        severity="information" if declared else "warning",
    )


@dataclass
class _Output:
    """The output head and the loss as the output checks see them; findings collect in `findings`."""

    trace: Trace
    head: Head
    family: str
    y: dict | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def act(self) -> str:
        return self.head.activation

    @property
    def units(self) -> int | None:
        return self.head.units

    def add(self, r: Rule, message: str, target: Target, fixes: list[FixSpec], severity: str | None = None) -> None:
        ev = {"output_activation": self.act, "output_units": self.units, "loss": self.trace.compile.loss.get("name"), "loss_family": self.family}
        if self.head.where != "layer":
            ev["activation_applied_in"] = self.head.where
        layer = self.head.act_layer.index if target_layer(target) is not None else None
        self.findings.append(r.finding(message, target, severity=severity, layer=layer, evidence=ev, fixes=fixes))


def check_output_and_loss(trace: Trace) -> list[Finding]:
    head = output_head(trace)
    family = loss_family(trace)
    if head is None or trace.compile is None or family in ("unknown",):
        return []
    o = _Output(trace, head, family, trace.fit.y if trace.fit else None)
    if not _softmax_one_unit(o) and not _multi_label(o):
        {"categorical": _categorical_output, "sparse": _categorical_output, "binary": _binary_output,
         "regression": _regression_output}.get(family, lambda o: None)(o)
    return o.findings


def _softmax_one_unit(o: _Output) -> bool:
    if o.units != 1 or o.act != "softmax":
        return False
    new = "sigmoid" if o.family in ("binary", "categorical", "sparse") else "linear"
    t, f = _act_fix(o.trace, o.head, new, "")
    o.add(SOFTMAX_ONE_UNIT, f"softmax over a single unit always outputs 1.0, so {_where(o.head)} cannot learn; use {new}.", t, f)
    return True


def _multi_label(o: _Output) -> bool:
    y = o.y
    # Certain before any step, whatever the loss: softmax rows sum to one, multi-hot rows do not
    # (a regression loss on them cannot reach zero either: it averages the tags of a row).
    if not (o.family in ("categorical", "binary", "regression") and o.act == "softmax" and y and y.get("multi_hot") and (o.units or 0) > 1):
        return False
    t = activation_target(o.trace, o.head)
    fix = activation_fix(o.trace, o.head, "sigmoid", 'Use a sigmoid output and loss "binary_crossentropy" (several labels per sample)')
    if fix is not None:
        fix.also = [FixSpec("", NewValue('"binary_crossentropy"'), target=CompileArg(arg="loss"))] if o.family != "binary" else []
    loss = "" if o.family != "regression" else f" and a regression loss ({o.trace.compile.loss.get('name')}) cannot fit rows whose targets sum to more than one"
    o.add(
        MULTI_LABEL,
        f"Samples carry several labels at once (up to {y.get('max_labels_per_row', '?'):g} per row), but {_where(o.head)} is a softmax, "
        f"which makes the classes compete for one share of probability{loss}; a multi-label output needs sigmoid units and binary cross-entropy.",
        t,
        [fix] if fix else [],
    )
    return True


def _categorical_output(o: _Output) -> None:
    act, units = o.act, o.units
    if units == 1 and o.family == "categorical":
        t, f = _loss_fix("binary_crossentropy")
        o.add(CATEGORICAL_ONE_UNIT, "categorical cross-entropy over a single output unit is always 0: nothing is learned. "
              "With one unit use binary_crossentropy.", t, f)
        return
    if from_logits(o.trace):
        if act in ("softmax", "sigmoid"):
            _from_logits_on_probabilities(o.head, act, o.add)
        return
    if act != "softmax" and units and units > 1:
        t, f = _act_fix(o.trace, o.head, "softmax", " (cross-entropy needs a probability distribution)")
        if o.head.where == "layer" and o.head.act_layer is o.head.units_layer:
            f.append(FixSpec("Keep the activation and compute the loss from logits", SetKwarg("from_logits", "True"),
                             target=CompileArg(arg="loss")))
        # Keras renormalizes non-negative outputs to sum to 1 before the log, so sigmoid
        # units still train (just unusually); negative or all-zero outputs do not.
        sev = "error" if act in RELU_LIKE or act == "linear" else ("information" if act in ("sigmoid", "hard_sigmoid", "softplus", "exponential") else "warning")
        o.add(NOT_DISTRIBUTION, f"{o.family} cross-entropy expects probabilities, but {_where(o.head)} outputs values in "
              f"{_fmt_range(act)}: the loss is undefined or misleading.", t, f, severity=sev)


def _binary_output(o: _Output) -> None:
    act, units = o.act, o.units
    if from_logits(o.trace):
        if act == "sigmoid":
            _from_logits_on_probabilities(o.head, act, o.add)
        return
    if units and units > 2 and act == "softmax":
        new = "categorical_crossentropy" if o.y and o.y.get("one_hot") else "sparse_categorical_crossentropy"
        t, f = _loss_fix(new)
        o.add(BINARY_MULTICLASS, f"binary cross-entropy on a {units}-way softmax treats each class as an independent yes/no; use {new}.", t, f)
    elif act not in ("sigmoid", "softmax", "hard_sigmoid"):
        t, f = _act_fix(o.trace, o.head, "sigmoid", " (binary cross-entropy needs outputs in [0, 1])")
        o.add(NOT_PROBABILITY, f"binary cross-entropy expects probabilities in [0, 1], but {_where(o.head)} outputs values in {_fmt_range(act)}.", t, f)


def _regression_output(o: _Output) -> None:
    y, act, units = o.y, o.act, o.units
    if not y:
        return
    loss = o.trace.compile.loss.get("name")
    class_index = bool(y.get("integer_valued") and (units or 0) > 1 and len(y.get("shape") or []) == 1)
    if (y.get("one_hot") or class_index) and act == "softmax":
        new = "categorical_crossentropy" if y.get("one_hot") else "sparse_categorical_crossentropy"
        t, f = _loss_fix(new)
        # Trains, but slowly: a warning only once training confirms it (see diagnose()).
        o.add(REGRESSION_ON_CLASSES, f"A regression loss ({loss}) on a {units}-way softmax classifier gives vanishing gradients "
              f"once a class is wrong with confidence; use {new}.", t, f)
    elif act == "sigmoid" and units == 1 and y.get("integer_valued") and y.get("n_unique") == 2 and y.get("min") == 0 and y.get("max") == 1:
        t, f = _loss_fix("binary_crossentropy")
        o.add(REGRESSION_ON_CLASSES, f"A regression loss ({loss}) on a sigmoid binary classifier: its gradient vanishes where the "
              "sigmoid saturates on a wrong answer; use binary_crossentropy.", t, f)
    elif y.get("min") is not None:
        lo, hi = ACTIVATION_RANGE.get(act, (-math.inf, math.inf))
        if (y["min"] < lo - 1e-6 or y["max"] > hi + 1e-6) and (y.get("n_unique") or 0) > 2:
            t, f = _act_fix(o.trace, o.head, "linear", " (regression targets outside the activation's range)")
            o.add(TARGETS_OUT_OF_RANGE, f"Targets span [{y['min']:.3g}, {y['max']:.3g}] but {_where(o.head)} can only output {_fmt_range(act)}.", t, f)


@dataclass
class _Labels:
    """The labels handed to `fit` next to the output layer they are compared with."""

    trace: Trace
    y: dict
    out: Any  # the output layer that sets the units
    family: str

    @property
    def units(self) -> int:
        return self.out.units or 0

    @property
    def shape(self) -> list[int]:
        return self.y.get("shape") or []

    @property
    def one_dim(self) -> bool:
        shape = self.shape
        return len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1)

    @property
    def ev(self) -> dict[str, Any]:
        y = self.y
        return {"label_min": y.get("min"), "label_max": y.get("max"), "label_shape": y.get("shape"), "output_units": self.units, "loss_family": self.family}

    def units_fix(self, r: Rule, message: str, n: int) -> Finding:
        return r.finding(message, LayerArg(layer=self.out.index, arg="units", position=0), layer=self.out.index, evidence=self.ev,
                         fixes=[FixSpec(f"Use {n} output units", NewValue(str(n)))])


def _labels_y() -> Target:
    return FitData(arg="y", position=1)


def check_labels(trace: Trace) -> list[Finding]:
    """Labels vs loss vs output size: the shape and range mismatches that crash or silently mislead."""
    head = output_head(trace)
    y = trace.fit.y if trace.fit else None
    family = loss_family(trace)
    if head is not None and (not y or y.get("min") is None):
        return _check_observed_labels(trace, family)
    if head is None or not y or y.get("min") is None:
        return []
    labels = _Labels(trace, y, head.units_layer, family)
    rank = _rank_mismatch(labels)
    if rank is not None:
        return [rank]
    found = _class_labels(labels) if family in ("categorical", "sparse") else _binary_labels(labels) if family == "binary" else None
    if found is None and family in ("categorical", "sparse", "binary") and not y.get("integer_valued") and not y.get("one_hot") \
            and (y.get("n_unique") or 0) > CONTINUOUS["distinct"]:
        found = CONTINUOUS.finding(
            f"The targets are continuous ({y.get('n_unique')} distinct values) but the loss is a classification loss; use a regression loss.",
            CompileArg(arg="loss"), evidence=labels.ev, fixes=[FixSpec('Use loss "mse"', NewValue('"mse"'))])
    return [found] if isinstance(found, Finding) else []


def _rank_mismatch(labels: _Labels) -> Finding | None:
    trace, shape, out = labels.trace, labels.shape, labels.out
    out_shape = (trace.output_layer.output_shape if trace.output_layer else None) or out.output_shape or []
    expected_rank = (len(shape) + 1 if labels.one_dim else len(shape)) if labels.family == "sparse" else max(len(shape), 2)
    if not (out_shape and shape and len(out_shape) > expected_rank):
        return None
    first = next((l for l in trace.layers if l.output_shape and len(l.output_shape) > expected_rank and l.cls in ("Dense", "EinsumDense")), out)
    return RANK_MISMATCH.finding(
        f"The model outputs shape {tuple(out_shape)} but the labels have shape {tuple(shape)}: {layer_label(first)} receives "
        f"a {len(first.output_shape or out_shape)}-D tensor (missing Flatten or pooling before the Dense layers?).",
        Layer(layer=first.index), layer=first.index, evidence={**labels.ev, "output_shape": out_shape}, fixes=[])


def _class_labels(labels: _Labels) -> Finding | None:
    """Categorical and sparse cross-entropy: one-hot vs indices, index range vs units."""
    y, units, shape, family = labels.y, labels.units, labels.shape, labels.family
    sparse_1d = family == "sparse" and labels.one_dim and units > 1
    if family == "categorical" and labels.one_dim and y.get("integer_valued") and units > 1:
        return NOT_ONE_HOT.finding(
            f"categorical_crossentropy needs one-hot labels of width {units}, but the labels are class indices {tuple(shape)}; "
            "use sparse_categorical_crossentropy (or one-hot encode the labels).",
            CompileArg(arg="loss"), evidence=labels.ev,
            fixes=[FixSpec('Use loss "sparse_categorical_crossentropy"', NewValue('"sparse_categorical_crossentropy"')),
                   FixSpec("One-hot encode the labels (wherever the model gets them)", Feed("one_hot"))])
    if family == "sparse" and y.get("one_hot"):
        return ONE_HOT_SPARSE.finding(
            "sparse_categorical_crossentropy needs class indices, but the labels are one-hot; use categorical_crossentropy.",
            CompileArg(arg="loss"), evidence=labels.ev,
            fixes=[FixSpec('Use loss "categorical_crossentropy"', NewValue('"categorical_crossentropy"'))])
    if sparse_1d and not y.get("integer_valued") and 0 < (y.get("n_unique") or 0) <= 2 * units:
        return NOT_CLASS_INDICES.finding(
            f"sparse_categorical_crossentropy needs integer class indices 0..{units - 1}, but the labels are fractions in "
            f"[{y['min']:.3g}, {y['max']:.3g}] (scaled like the inputs?): they are truncated to other classes.",
            _labels_y(), evidence=labels.ev, fixes=[])
    if sparse_1d and y["max"] >= units:
        if y["min"] >= 1 and int(y["max"]) == units:
            return OFF_BY_ONE.finding(
                f"Labels run from {y['min']:.0f} to {y['max']:.0f} but the {units} output units cover classes 0..{units - 1}: shift the labels to start at 0.",
                _labels_y(), evidence=labels.ev, fixes=[FixSpec("Shift the labels to start at 0 (wherever the model gets them)", Feed("labels_shift"))])
        n = int(y["max"]) + 1
        return labels.units_fix(TOO_FEW_UNITS, f"Labels go up to {y['max']:.0f} ({n} classes) but the {layer_label(labels.out)} has only {units} units.", n)
    if family == "categorical" and len(shape) >= 2 and shape[-1] != units and units > 1:
        return labels.units_fix(UNITS_MISMATCH, f"Labels are one-hot of width {shape[-1]} but the {layer_label(labels.out)} has {units} units.", shape[-1])
    return None


def _binary_labels(labels: _Labels) -> Finding | bool | None:
    """Binary cross-entropy: label shape vs units, labels outside {0, 1}. False: labels out of
    range that no check here explains (then nothing else is said about them)."""
    y, units = labels.y, labels.units
    if labels.one_dim and units >= 2 and not y.get("one_hot"):
        return BINARY_LABEL_SHAPE.finding(
            f"binary_crossentropy compares each output unit with a label, but the {layer_label(labels.out)} has {units} units "
            f"and the labels are one class index per sample {tuple(labels.shape)}; use sparse_categorical_crossentropy.",
            CompileArg(arg="loss"), evidence=labels.ev,
            fixes=[FixSpec('Use loss "sparse_categorical_crossentropy"', NewValue('"sparse_categorical_crossentropy"'))])
    if not (y["min"] < 0 or y["max"] > 1):
        return None
    uniq = y.get("n_unique") or 0
    if uniq <= 2:
        return LABELS_NOT_01.finding(
            f"binary_crossentropy needs labels in {{0, 1}}, but they are in [{y['min']:.3g}, {y['max']:.3g}].",
            _labels_y(), evidence=labels.ev, fixes=[FixSpec("Map the labels to 0/1 (wherever the model gets them)", Feed("labels_unit"))])
    if y.get("integer_valued") and units == 1:
        return BINARY_MULTICLASS_LABELS.finding(
            f"Labels have {uniq} classes but the model is a binary classifier (1 sigmoid unit, binary_crossentropy).",
            CompileArg(arg="loss"), evidence=labels.ev, fixes=[_multiclass_head_fix(labels.trace, labels.out, int(y["max"]) + 1)])
    return False


# TensorFlow's sparse cross-entropy on CPU rejects a class index out of range and lists the batch's labels.
_LABEL_OUT_OF_RANGE = re.compile(r"Received a label value of (-?\d+) which is outside the valid range of \[0, (\d+)\)\.\s+Label values:((?:\s+-?\d+)+)")


def labels_in_crash(trace: Trace) -> dict[str, Any] | None:
    """The labels of the batch that the loss rejected, as a summary like `fit`'s (None: no such crash)."""
    m = _LABEL_OUT_OF_RANGE.search(trace.crash.message) if trace.crash is not None and trace.crash.message else None
    if m is None:
        return None
    values = [int(v) for v in m.group(3).split()]
    return {"min": float(min(values)), "max": float(max(values)), "integer_valued": True, "n_unique": len(set(values)),
            "shape": [len(values)], "seen_in": "the batch the loss rejected"}


def _check_observed_labels(trace: Trace, family: str) -> list[Finding]:
    """Labels that come from a dataset or generator: only their range, as the first batches showed
    it, or as the loss listed them when it rejected a batch."""
    head = output_head(trace)
    crashed_on = labels_in_crash(trace) if family == "sparse" and head is not None else None
    if crashed_on is not None:
        found = _class_labels(_Labels(trace, crashed_on, head.units_layer, family))
        return [found] if found is not None else []
    rows = [st.values["y"] for st in trace.steps[:5] if "y" in st.values and not st.values["y"].get("nonfinite")]
    if not rows or family != "binary":
        return []
    lo, hi = min(r.get("min", 0.0) for r in rows), max(r.get("max", 0.0) for r in rows)
    if lo >= 0.0 and hi <= 1.0:
        return []
    return [LABELS_NOT_01.finding(
        f"binary_crossentropy needs labels in {{0, 1}}, but the batches fed to fit carry labels in [{lo:.3g}, {hi:.3g}] "
            "(the loss goes negative or explodes).",
        FitData(arg="y", position=1),
        evidence={"label_min": lo, "label_max": hi, "seen_in": "first batches"},
        fixes=[],
    )]


def check_static(trace: Trace) -> list[Finding]:
    found = check_labels(trace)
    seen = {(f.root_cause, f.target.kind, target_arg(f.target)) for f in found}
    for f in check_output_and_loss(trace):
        if (f.root_cause, f.target.kind, target_arg(f.target)) not in seen:
            found.append(f)
    return found


def _fmt_range(act: str) -> str:
    lo, hi = ACTIVATION_RANGE.get(act, (-math.inf, math.inf))
    f = lambda v: "-inf" if v == -math.inf else ("inf" if v == math.inf else f"{v:g}")  # noqa: E731
    return f"[{f(lo)}, {f(hi)}]"
