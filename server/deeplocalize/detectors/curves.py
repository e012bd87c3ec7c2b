"""Faults seen in the learning curve as a whole: no progress, oscillation,
too few epochs, too few steps (batch size), too much regularization."""

from __future__ import annotations

import numpy as np

from ..findings import CallArgs, Finding, FitArg, FitData, FixSpec, LayerArg, NewValue, target_layer
from ..trace import Trace
from .setup import layer_label, lr_info, median_log_update_ratio
from .causes import CauseScope, alternatives, candidate_causes
from ..rules import rule
from .registry import runtime_detector
from .progress import ACCURACY_KEYS, VAL_ACCURACY_KEYS, Progress

REGULARIZATION = rule(
    "regularization-dominates", "training", "warning", "underfitting",
    "The weight penalty is more than {penalty_share:.0%} of the loss early in training while the model underfits.",
    causes=("regularization",), thresholds={"penalty_share": 0.5}, traits=frozenset({"generalization"}))
DROPOUT = rule(
    "dropout-too-high", "training", "warning", "underfitting",
    "A dropout rate of {rate:g} or more while the model underfits.",
    causes=("regularization",), thresholds={"rate": 0.7}, traits=frozenset({"generalization"}))
FEW_STEPS = rule(
    "too-few-steps", "training", "warning", "slow_convergence",
    "One or two weight updates per epoch (a batch as large as the data, fewer than {total_steps:g} updates in all) while the model is still far from fitting.",
    causes=("batch_size",), thresholds={"total_steps": 100}, traits=frozenset({"not_testable"}))
BATCH_ONE = rule(
    "batch-size-one", "training", "warning", "noisy_gradient",
    "Batch size 1 with a noisy, failing loss: every step follows one sample's gradient.",
    causes=("batch_size",))
FEW_EPOCHS = rule(
    "too-few-epochs", "training", "warning", "underfitting",
    "`fit` ended by itself (not by DeepLocalize's epoch cap) while the loss was still falling fast and accuracy was low.",
    details="Never reported when the steps diverge (more epochs of the same only diverge further).",
    causes=("epochs",), traits=frozenset({"not_testable"}), fallback_rank=1)
NOT_LEARNING = rule(
    "not-learning", "training", "warning", "loss_not_decreasing",
    "Generic: the loss does not decrease, accuracy stays at chance, or the loss oscillates;",
    details="the root cause is the result of elimination and the finding yields (becomes information) when a more specific finding exists. "
            "Never said of a fit that the analysis' epoch cap or time budget cut while its loss fell, in its first three epochs or "
            "steadily at a pace that, kept up over the epochs and steps the script asks for, takes it as far as a fit that ended by "
            "itself must come not to be called stalled (5% of the first loss, 25% at chance accuracy): that is a slow start, not a stall.",
    causes=("initialization", "learning_rate", "optimizer", "data_normalization", "loss", "activation"),
    traits=frozenset({"established"}), fallback_rank=6)
UNRELATED_LABELS = rule(
    "labels-unrelated-to-inputs", "training", "warning", "no_generalization",
    "Training accuracy rises while validation accuracy stays at chance for the whole run:",
    details="the model memorizes labels that do not follow from the inputs (labels shuffled on their own, misaligned after a sort "
            "or a split). Points at the line that last assigns the labels passed to `fit`.",
    causes=("labels",), traits=frozenset({"not_testable"}))


@runtime_detector
def detect_regularization(trace: Trace, progress: Progress | None) -> list[Finding]:
    if progress is None:
        return []
    # Measured early: a dominant penalty first shrinks the weights, after which
    # the penalty is small and the data loss sits at chance.
    reg = trace.series("loss", "reg")
    loss = trace.series("loss", "loss")
    n = max(3, len(loss) // 10)
    if len(loss) >= 3 and progress.poor:
        share = float(np.nanmedian(reg[:n] / np.maximum(np.abs(loss[:n]), 1e-12)))
        if share > REGULARIZATION["penalty_share"]:
            best, best_val = None, 0.0
            for l in trace.layers:
                v = trace.series(f"L{l.index}.reg", "value")[:n]
                v = v[np.isfinite(v)]
                if len(v) and float(np.median(v)) > best_val:
                    best, best_val = l, float(np.median(v))
            if best is not None:
                # The penalty that is set: on the weights, else on the layer's outputs (an activity regularizer).
                arg = "activity_regularizer" if best.activity_regularizer and not best.kernel_regularizer else "kernel_regularizer"
                what = "activity penalty on its outputs" if arg == "activity_regularizer" else "weight penalty"
                return [REGULARIZATION.finding(
                    f"The {'weight' if arg == 'kernel_regularizer' else 'regularization'} penalty is {share:.0%} of the loss, so training "
                        f"shrinks {'weights' if arg == 'kernel_regularizer' else 'activations'} instead of fitting the data; "
                        f"{layer_label(best)} contributes the most (its {what}).",
                    LayerArg(layer=best.index, arg=arg),
                    layer=best.index,
                    evidence={"regularization_share": round(share, 3)},
                    fixes=[FixSpec("Use a 1e-4 penalty", CallArgs("1e-4"))],
                )]
    heavy = [l for l in trace.layers if l.cls in ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "AlphaDropout", "GaussianDropout")
             and l.rate is not None and l.rate >= DROPOUT["rate"]]
    if heavy and (progress.poor or (progress.val_gap is not None and progress.val_gap > 0.1)):
        l = heavy[0]
        # Every such layer in one fix: lowering one still leaves the others starving the model.
        also = [FixSpec("", NewValue("0.2"), target=LayerArg(layer=o.index, arg="rate", position=0)) for o in heavy[1:]]
        return [DROPOUT.finding(
            f"{layer_label(l)} drops {l.rate:.0%} of its inputs and the model underfits"
                + (f" (validation accuracy is {progress.val_gap:.0%} above training accuracy)" if progress.val_gap and progress.val_gap > 0.1 else "") + ".",
            LayerArg(layer=l.index, arg="rate", position=0),
            layer=l.index,
            evidence={"dropout_rate": l.rate, "train_accuracy": progress.accuracy, "val_gap": progress.val_gap},
            fixes=[FixSpec("Use a dropout rate of 0.2" + (f" on all {len(heavy)} dropout layers" if also else ""), NewValue("0.2"), also=also)],
        )]
    return []


@runtime_detector
def detect_batch_size(trace: Trace, progress: Progress | None) -> list[Finding]:
    fit = trace.fit
    if fit is None or progress is None or not fit.steps_per_epoch or not (fit.x and fit.x.get("n")):
        return []
    if trace.continued_later:  # a later fit goes on training this model
        return []
    n = fit.x["n"]
    # What the script asked for, not what the analysis' epoch cap let run.
    total_steps = fit.steps_per_epoch * max(1, fit.epochs_requested)
    if fit.steps_per_epoch <= 2 and n >= 200 and total_steps < FEW_STEPS["total_steps"] and (progress.poor or progress.still_improving):
        return [FEW_STEPS.finding(
            f"batch_size={fit.batch_size} on {n} samples gives {fit.steps_per_epoch} update(s) per epoch "
                f"({total_steps} in all): the model is still far from fitting. Use smaller batches.",
            FitArg(arg="batch_size", position=2),
            evidence={"batch_size": fit.batch_size, "samples": n, "steps_per_epoch": fit.steps_per_epoch},
            fixes=[FixSpec("Use batch_size=32", NewValue("32"))],
        )]
    if fit.batch_size == 1 and n >= 500 and (progress.oscillation > 0.3 or progress.poor):
        return [BATCH_ONE.finding(
            f"batch_size=1 on {n} samples: every step follows one sample's gradient, so the loss is noisy and training is slow.",
            FitArg(arg="batch_size", position=2),
            evidence={"batch_size": 1, "samples": n},
            fixes=[FixSpec("Use batch_size=32", NewValue("32"))],
        )]
    return []


@runtime_detector
def detect_epochs(trace: Trace, progress: Progress | None) -> list[Finding]:
    fit = trace.fit
    if fit is None or progress is None or not trace.fit_end or trace.fit_end.get("reason") != "completed":
        return []
    if fit.epochs_requested > 10 or trace.continued_later:
        return []
    med = median_log_update_ratio(trace)
    healthy_updates = med is None or -4.0 <= med <= -0.7
    losses = trace.epoch_series("loss")
    losses = losses[np.isfinite(losses)]
    steady = len(losses) >= 4 and bool(np.all(np.diff(losses[-4:]) < 0)) and progress.final_slope > 0.01
    # Updates far above a healthy size (a diverging step) are not cured by more epochs of the same.
    improving = healthy_updates and (progress.still_improving or (progress.poor and steady) or (
        fit.epochs_requested <= 3 and progress.rel_improvement >= 0.05 and progress.final_slope > 0))
    if not improving:
        return []
    far = (progress.accuracy is not None and progress.accuracy < 0.85) or (progress.accuracy is None and progress.rel_improvement < 0.9)
    if not far:
        return []
    # Stopping early while still improving is a fault only if the model is still poor;
    # a model that already fits reasonably well is a choice (information).
    severity = "warning" if progress.poor or fit.epochs_requested <= 3 else "information"
    new = max(20, fit.epochs_requested * 10)
    trend = (f"still falling {progress.final_slope:.0%} per epoch" if progress.still_improving
             else f"still falling (down {progress.rel_improvement:.0%} so far)")
    return [FEW_EPOCHS.finding(
        f"Training stops after {fit.epochs_requested} epoch(s) while the loss is {trend}"
            + (f" (accuracy {progress.accuracy:.2f})" if progress.accuracy is not None else "") + ".",
        FitArg(arg="epochs", position=3),
        severity=severity,
        evidence={"epochs": fit.epochs_requested, "last_epoch_loss_drop": round(progress.final_slope, 3), "accuracy": progress.accuracy},
        fixes=[FixSpec(f"Train for {new} epochs", NewValue(str(new)))],
        confidence="weak",
    )]


@runtime_detector
def detect_not_learning(trace: Trace, progress: Progress | None) -> list[Finding]:
    """Loss not decreasing / accuracy at chance / oscillating, with the cause found by elimination."""
    # An oscillating loss is a fault only while the model fits poorly: near zero, relative
    # wiggles of a falling loss are large and harmless.
    if progress is None or not (progress.stalled or (progress.oscillation > 0.5 and progress.poor)):
        return []
    osc = progress.oscillation > 0.5 and not progress.stalled
    ev = {"initial_loss": round(progress.initial_loss, 4), "final_loss": round(progress.final_loss, 4),
          "relative_improvement": round(progress.rel_improvement, 4), "accuracy": progress.accuracy, "steps": progress.steps}
    med = median_log_update_ratio(trace)
    cls, lr, ratio = lr_info(trace)
    slow = not osc and med is not None and med <= -1.0
    causes = candidate_causes(trace, scope=CauseScope(data_first=slow))
    cause = causes[0]
    root, target, fixes = cause.root, cause.target, cause.fixes
    ev.update(cause.evidence)
    symptom = "loss_oscillating" if osc else "loss_not_decreasing"
    if osc:
        what = "The loss oscillates instead of decreasing"
    elif progress.rel_improvement < 0.05:
        what = (f"The loss does not decrease ({progress.initial_loss:.4g} -> {progress.final_loss:.4g} over {progress.steps} steps)"
                + (f" and accuracy stays at {progress.accuracy:.2f}" if progress.accuracy is not None else ""))
    else:
        what = (f"The model stays at chance level (loss {progress.initial_loss:.4g} -> {progress.final_loss:.4g} over {progress.steps} steps"
                + (f", accuracy {progress.accuracy:.2f} vs {progress.chance_accuracy:.2f} by always guessing the majority" if progress.accuracy is not None and progress.chance_accuracy is not None else "") + ")")
    return [NOT_LEARNING.finding(
        f"{what}.",
        target,
        root_cause=root,
        names_cause=True,
        symptom=symptom,
        layer=target_layer(target),
        evidence=ev,
        fixes=fixes,
        confidence="weak",
        alternatives=alternatives(causes[1:]),
    )]


LR_DECAYED = rule(
    "learning-rate-decayed-away", "training", "warning", "loss_not_decreasing",
    "A learning-rate schedule or callback (ReduceLROnPlateau, LearningRateScheduler) cut the rate below 1/{decay:g} of where it "
    "started, the loss stopped falling (less than {flat:.0%}) from then on, and the model still fits poorly.",
    details="The steps became too small to learn anything: a `min_lr`, a gentler `factor` or a slower schedule lets training go on. "
            "Read from the `learning_rate` the callbacks log at each epoch.",
    causes=("learning_rate",), thresholds={"decay": 1000, "flat": 0.01})


@runtime_detector
def detect_learning_rate_decayed_away(trace: Trace, progress: Progress | None) -> list[Finding]:
    if progress is None or not progress.poor:
        return []
    rates, losses = trace.epoch_series("learning_rate"), trace.epoch_series("loss")
    logged = np.isfinite(rates) & (rates > 0) & np.isfinite(losses)
    if logged.sum() < 3:
        return []
    rates, losses = rates[logged], losses[logged]
    start = lr_info(trace)[1] or float(rates[0])
    cut = np.flatnonzero(rates < start / LR_DECAYED["decay"])
    if not len(cut) or len(losses) - cut[0] < 2:
        return []
    after = losses[cut[0]:]
    if (after[0] - float(np.min(after))) / max(abs(float(after[0])), 1e-12) > LR_DECAYED["flat"]:
        return []  # still learning at the small rate
    epoch = int(cut[0]) + 1
    return [LR_DECAYED.finding(
        f"The learning rate was cut from {start:g} to {rates[cut[0]]:.2g} by epoch {epoch} and to {rates[-1]:.2g} at the end; "
        f"the loss has not fallen since ({after[0]:.4g} -> {after[-1]:.4g}) and the model still fits poorly.",
        FitArg(arg="callbacks"),
        evidence={"initial_learning_rate": start, "final_learning_rate": float(rates[-1]), "cut_at_epoch": epoch,
                  "loss_at_cut": round(float(after[0]), 4), "final_loss": round(float(after[-1]), 4)})]


VAL_ACCURACY = VAL_ACCURACY_KEYS
_ACCURACY = ACCURACY_KEYS[:-1]  # not "compile_metrics": a series here must be an accuracy


def first_series(trace: Trace, names: tuple[str, ...]) -> np.ndarray:
    for name in names:
        s = trace.epoch_series(name)
        s = s[np.isfinite(s)]
        if len(s):
            return s
    return np.array([])


@runtime_detector
def detect_unrelated_labels(trace: Trace, progress: Progress | None) -> list[Finding]:
    """Training accuracy climbs while validation accuracy stays at chance for the whole run:
    the model memorizes labels that do not follow from the inputs (shuffled or misaligned labels)."""
    if progress is None or progress.chance_accuracy is None:
        return []
    acc, val = first_series(trace, _ACCURACY), first_series(trace, VAL_ACCURACY)
    if len(acc) < 3 or len(val) < 3:
        return []
    chance = progress.chance_accuracy
    memorizes = acc[-1] - acc[0] >= 0.15 and acc[-1] >= chance + 0.15
    at_chance = float(np.max(val)) < chance + 0.15 and val[-1] <= val[0] + 0.05
    if not (memorizes and at_chance):
        return []
    # BatchNormalization's moving statistics need a few hundred steps: until then validation
    # can sit at chance in a healthy model.
    warming_up = any(l.cls == "BatchNormalization" for l in trace.layers) and progress.steps < 500
    return [UNRELATED_LABELS.finding(
        f"Training accuracy rises from {acc[0]:.2f} to {acc[-1]:.2f} but validation accuracy stays at chance "
            f"({float(np.max(val)):.2f} at best, chance {chance:.2f}): the labels do not follow from the inputs "
            "(shuffled or misaligned with the samples?).",
        FitData(arg="y", position=1),
        severity="information" if warming_up else "warning",
        evidence={"train_accuracy_first": round(float(acc[0]), 3), "train_accuracy_last": round(float(acc[-1]), 3),
            "val_accuracy_best": round(float(np.max(val)), 3), "chance_accuracy": round(chance, 3)},
        fixes=[],
    )]
