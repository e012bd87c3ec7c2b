"""Is training making progress? Loss and accuracy curves over windows, judged
against the loss at chance, not against exact float equality."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from ..trace import Trace
from .setup import class_shares, loss_family, n_classes


# Keras' names for training accuracy in the epoch logs, and for validation accuracy.
ACCURACY_KEYS = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy", "compile_metrics")
VAL_ACCURACY_KEYS = ("val_accuracy", "val_acc", "val_sparse_categorical_accuracy", "val_categorical_accuracy", "val_binary_accuracy")


@dataclass
class Progress:
    """Summary of the learning curve.

    rel_improvement: (initial - final) / initial loss; final_slope: relative loss
    drop over the last epoch (or last half-epoch window); chance_ratio: final
    loss / loss at chance for classification.
    """

    steps: int
    epochs: int
    initial_loss: float
    final_loss: float
    rel_improvement: float
    final_slope: float
    accuracy: float | None
    chance_accuracy: float | None
    chance_ratio: float | None
    oscillation: float
    val_gap: float | None
    # The analysis cut the fit (its epoch cap or time budget) while the loss fell: "early", in its
    # first epochs (too early to judge the curve at all), or "steady", at a pace that over the
    # steps the script asks for makes a real difference (a slow start, not a stall; how well it
    # fits so far is still judged). "" when the fit was not cut so.
    cut_while_falling: Literal["", "early", "steady"] = ""
    # The analysis cut the fit before it saw half of it and ten epochs: too little to call it failed for sure.
    barely_seen: bool = False

    @property
    def stalled(self) -> bool:
        if self.steps < 20 or self.cut_while_falling:
            return False
        at_chance = _at_chance(self.accuracy, self.chance_accuracy)
        # Accuracy at the majority rate while the loss falls a lot is a model still
        # learning (class weights, imbalanced data), not a stalled one.
        near_chance_loss = self.chance_ratio is not None and 0.9 < self.chance_ratio < 1.1
        if (at_chance or (self.chance_ratio is not None and self.chance_ratio > 0.9 and self.accuracy is None)) and (self.rel_improvement < AT_CHANCE_IMPROVEMENT or near_chance_loss):
            return True
        return self.rel_improvement < STALL_IMPROVEMENT

    @property
    def fails(self) -> bool:
        """Training plainly failed: a whole fit (not one the analysis cut while it learned) ends at
        the accuracy and the loss of guessing. No fix need heal it for that to be true."""
        if self.steps < 20 or self.cut_while_falling or self.barely_seen or self.chance_ratio is None:
            return False
        if self.accuracy is not None:
            return _at_chance(self.accuracy, self.chance_accuracy) and self.chance_ratio > 0.9
        return self.chance_ratio > AT_CHANCE_RATIO and self.rel_improvement < AT_CHANCE_IMPROVEMENT

    @property
    def poor(self) -> bool:
        """Learning, but far from fitting the training data."""
        if self.cut_while_falling == "early":
            return False
        if self.stalled:
            return True
        if self.barely_seen:
            return False  # how far it got is the cut's doing (too little of the fit seen), not the script's
        if self.accuracy is not None:
            chance = self.chance_accuracy if self.chance_accuracy is not None else 0.5
            return self.accuracy < chance + 0.5 * (1.0 - chance)
        if self.cut_while_falling == "steady":
            # Without accuracy the only measure is the fraction of the loss shed so far; for a
            # curve still falling steadily when the analysis cut it, that fraction is the cut's,
            # not the script's.
            return False
        return self.rel_improvement < 0.5

    @property
    def spared_by_the_cut(self) -> bool:
        """Judged as if the fit had ended where the analysis cut it, the curve would be poor."""
        return bool(self.cut_while_falling) and not self.poor and replace(self, cut_while_falling="").poor

    @property
    def still_improving(self) -> bool:
        return self.final_slope > 0.04


def measure(trace: Trace) -> Progress | None:
    loss = trace.series("loss", "loss")
    finite = loss[np.isfinite(loss)]
    if len(finite) < 3:
        return None
    n0 = max(1, min(5, len(finite) // 10))
    initial = float(np.median(finite[:n0]))
    epoch_loss = trace.epoch_series("loss")
    epoch_loss = epoch_loss[np.isfinite(epoch_loss)]
    if len(epoch_loss) >= 2:
        final = float(epoch_loss[-1])
        slope = float((epoch_loss[-2] - epoch_loss[-1]) / max(abs(epoch_loss[-2]), 1e-12))
    else:
        tail = finite[len(finite) // 2 :]
        final = float(np.mean(tail[len(tail) // 2 :])) if len(tail) >= 2 else float(finite[-1])
        first = float(np.mean(tail[: max(1, len(tail) // 2)]))
        slope = (first - final) / max(abs(first), 1e-12)
    rel = (initial - final) / max(abs(initial), 1e-12)
    acc = None
    for key in ACCURACY_KEYS:
        series = trace.epoch_series(key)
        series = series[np.isfinite(series)]
        if len(series) and np.all((series >= 0) & (series <= 1)):
            acc = float(series[-1])
            break
    family = loss_family(trace)
    if acc is None and family in ("categorical", "sparse", "binary"):
        acc = hit_rate(trace)
    chance_acc = chance_ratio = None
    c = n_classes(trace)
    if family in ("categorical", "sparse") and c and c > 1:
        # Guessing means answering the prior: the majority's share is its accuracy, the prior's
        # entropy its loss (1/k and log k on balanced classes).
        shares = class_shares(trace)
        chance_acc = max(1.0 / c, shares[0]) if shares else 1.0 / c
        prior_loss = -sum(q * math.log(q) for q in shares if q > 0) if shares else math.log(c)
        chance_ratio = final / max(prior_loss, 1e-3)
    elif family == "binary":
        y = trace.fit.y if trace.fit else None
        p = y.get("mean") if y and y.get("min", 0) >= 0 and y.get("max", 1) <= 1 and y.get("mean") is not None else 0.5
        chance_acc = max(p, 1.0 - p)  # the majority-class baseline
        q = min(max(p, 0.01), 0.99)
        chance_ratio = final / (-(q * math.log(q) + (1 - q) * math.log(1 - q)))  # loss of always predicting the base rate
    osc = 0.0
    if len(epoch_loss) >= 4:
        d = np.diff(epoch_loss)
        signs = np.sign(d)
        changes = np.sum(signs[1:] * signs[:-1] < 0) / max(1, len(signs) - 1)
        amp = float(np.median(np.abs(d)) / max(float(np.mean(epoch_loss)), 1e-12))
        osc = float(changes * min(1.0, amp * 5))
    gap = None
    val_acc = trace.epoch_series("val_accuracy")
    if acc is not None and len(val_acc) and np.isfinite(val_acc[-1]):
        gap = float(val_acc[-1] - acc)
    return Progress(len(finite), len(trace.epochs), initial, final, rel, slope, acc, chance_acc, chance_ratio, osc, gap,
                    cut_while_falling=_cut_while_falling(trace, finite, epoch_loss, initial, _at_chance(acc, chance_acc)),
                    barely_seen=_barely_seen(trace, len(finite)))


def hit_rate(trace: Trace) -> float | None:
    """The probe's own hit rate over the last epoch's sampled steps (the share of samples whose top
    output is the label): the accuracy of a classifier compiled without an accuracy metric, and a
    measure that means the same whatever the loss."""
    hits = trace.series("hit", "rate")
    if not trace.steps or not len(hits):
        return None
    last = trace.steps[-1].epoch
    recent = hits[np.array([s.epoch == last for s in trace.steps])]
    recent = recent[np.isfinite(recent)]
    return float(np.mean(recent)) if len(recent) else None


def _at_chance(accuracy: float | None, chance: float | None) -> bool:
    """Within 5 points of guessing, or a tenth of the way from guessing to perfect (0.19 on ten
    balanced classes: a model that gets 16% has learned nothing to speak of)."""
    return accuracy is not None and chance is not None and accuracy < chance + max(0.05, 0.1 * (1.0 - chance))


# A finished fit whose loss fell by less than this fraction is stalled; at chance accuracy the
# loss must fall by the second (see Progress.stalled).
STALL_IMPROVEMENT = 0.05
AT_CHANCE_IMPROVEMENT = 0.25
# A final loss this close to the loss of guessing (or above it) has learned nothing.
AT_CHANCE_RATIO = 0.95


# A trend is steady when the loss' rank correlation with time is at least this strong.
STEADY_RANK_CORRELATION = -0.8
# Epochs a cut fit must have shown before its curve is judged at all.
JUDGED_EPOCHS = 3


def cut_by_the_analysis(trace: Trace) -> bool:
    """The fit did not end by itself: the analysis' epoch cap ended it, its time (or memory)
    budget stopped the process while it trained, or the user interrupted a real run (Ctrl-C).
    (A run stopped on a decisive finding is judged as it is: the finding was established in
    what it saw.)"""
    end = trace.fit_end
    if end is not None:
        return end.get("reason") == "capped"
    return trace.fit is not None and trace.crash is None and trace.end_reason in ("timeout", "memory", "interrupted")


def _barely_seen(trace: Trace, seen: int) -> bool:
    fit = trace.fit
    if fit is None or not cut_by_the_analysis(trace) or len(trace.epochs) >= 10:
        return False
    per_epoch = fit.steps_per_epoch or (seen // len(trace.epochs) if trace.epochs else 0)
    return per_epoch * max(1, fit.epochs_requested) > 2 * seen


def _cut_while_falling(trace: Trace, losses: np.ndarray, epoch_losses: np.ndarray, initial: float, at_chance: bool) -> Literal["", "early", "steady"]:
    """Judged against the script's own epochs and steps: the cut came within the first epochs
    while the loss fell (too early to judge a curve), or the loss falls steadily at a pace that,
    kept up linearly over the steps the fit still asks for, takes it out of a stall: as far as a
    fit that ended by itself must have come not to be called stalled (a slow start, such as a
    text model near chance loss whose fall speeds up later, is not a fault of the script). A loss
    that only drifts (no steady trend) or barely moves (a tiny rate) never passes."""
    fit = trace.fit
    if fit is None or not cut_by_the_analysis(trace):
        return ""
    seen = len(losses)
    # A dataset of unknown length: as many steps per epoch as the epochs seen had.
    per_epoch = fit.steps_per_epoch or (seen // len(trace.epochs) if trace.epochs else 0)
    if not per_epoch:
        return ""
    planned = per_epoch * max(1, fit.epochs_requested)
    if planned < 1.5 * seen:  # most of the fit was seen: what was seen is judged as it is
        return ""
    if len(trace.epochs) < JUDGED_EPOCHS:
        # Fell: over the epoch means where there are two, else first against last third of the steps.
        first, last = (epoch_losses[0], epoch_losses[-1]) if len(epoch_losses) >= 2 else (
            losses[: max(1, seen // 3)].mean(), losses[-max(1, seen // 3):].mean())
        return "early" if last < first else ""
    # The recent trend (a first fast drop says nothing of an oscillation after it): over the last
    # half of the epochs, else over the last half of the steps in up to ten bins (a mini-batch
    # loss is noisy).
    recent = losses[seen // 2:]
    if len(epoch_losses) >= 8:
        series = epoch_losses[len(epoch_losses) // 2:]
    elif len(epoch_losses) >= 4:
        series = epoch_losses
    else:
        series = np.array([b.mean() for b in np.array_split(recent, min(10, len(recent) // 2))]) if len(recent) >= 8 else recent[:0]
    if len(series) < 4 or _rank_correlation(series) > STEADY_RANK_CORRELATION:
        return ""
    pace = -float(np.polyfit(np.arange(len(recent)), recent, 1)[0]) if len(recent) >= 2 else 0.0
    if pace <= 0:
        return ""
    projected = max(float(losses[-1]) - pace * (planned - seen), 0.0)
    needed = AT_CHANCE_IMPROVEMENT if at_chance else STALL_IMPROVEMENT
    # At chance, what it already shed is no evidence (a loss that fell from a huge start to the
    # loss of guessing): the pace must take it away from where it is now.
    base = float(losses[-1]) if at_chance else initial
    return "steady" if (base - projected) / max(abs(base), 1e-12) >= needed else ""


def _rank_correlation(series: np.ndarray) -> float:
    """Spearman's rho of the series against time (-1: always falling)."""
    ranks = np.argsort(np.argsort(series)).astype(float)
    return float(np.corrcoef(np.arange(len(series), dtype=float), ranks)[0, 1])
