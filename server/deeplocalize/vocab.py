"""The words every stage shares, defined once: severities and their order, root causes,
the statuses of a run, of a report and of a verification, and the modules that mean
"this script uses Keras". A stage that needs one of them imports it from here, so a new
severity or status cannot be spelt two ways."""

from __future__ import annotations

from typing import Literal, TypedDict, get_args

Severity = Literal["error", "warning", "information", "hint"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
# What says training fails: fails `deeplocalize check`, is verified by experiment, is streamed early.
SERIOUS: frozenset[str] = frozenset({"error", "warning"})

RootCause = Literal[
    "activation", "loss", "learning_rate", "optimizer", "initialization", "data_normalization",
    "labels", "architecture", "regularization", "batch_size", "epochs", "numerical_operation",
]
ROOT_CAUSES: tuple[RootCause, ...] = get_args(RootCause)

# How a training process ended (runner.RunResult.status).
RunStatus = Literal["finished", "crashed", "timeout", "memory", "cancelled", "decisive", "failed"]
# How the analysis of a file ended (engine.FileReport.status), as the CLI and the server print it.
# `nothing_to_run`: a notebook without Python code cells (another kernel language, none at all).
ReportStatus = Literal["ok", "crashed", "timeout", "not_keras", "syntax_error", "nothing_to_run"]
REPORT_STATUSES: tuple[ReportStatus, ...] = get_args(ReportStatus)
# The loss a fit is compiled with, by what it computes (detectors.setup.loss_family); `custom`: code in the user's files.
LossFamily = Literal["categorical", "sparse", "binary", "regression", "hinge", "custom", "unknown"]
CLASSIFICATION_LOSSES: frozenset[LossFamily] = frozenset({"categorical", "sparse", "binary"})
# What the probe sends on its pipe, by event type (probe/hooks.py, child.py, record.py); the trace
# folds them (trace.TraceBuilder) and says what each was (trace.TraceEvent): nothing above it reads the wire.
EventKind = Literal[
    "started", "ready", "compile", "fit", "model_preview", "model", "layout", "initial_weights", "epoch_begin", "step",
    "epoch", "fit_end", "crash", "unsupported", "keras_workaround", "probe_error", "leftover", "script_fit", "script_evaluate", "end",
    "sources",  # the Keras callback's user code that exists only in memory (a notebook's cells): for its helper, not the trace
]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
# What the server is doing for a file (the `deeplocalize/runStatus` notification).
RunPhase = Literal["running", "verifying", "done", "skipped", "cancelled", "failed"]
# One fix's re-training, and the finding once its fixes were tried.
Verdict = Literal["verified", "refuted", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
Confirmation = Literal["verified", "unconfirmed", "inconclusive"]
CONFIRMATIONS: tuple[Confirmation, ...] = get_args(Confirmation)



# The probe's per-step statistics, one vector per (layer, kind), named field by field. The
# probe computes them in this order (probe/stats.py); the trace reads them by these names.
class ActivationStats(TypedDict):
    mean: float
    std: float
    min: float
    max: float
    mean_abs: float
    nonfinite: float  # fraction of values that are NaN/Inf
    nonpos: float  # fraction <= 0
    dead_units: float  # fraction of units that are <= 0 for every sample of the batch
    sat5: float  # fraction with |x| > 5 (where sigmoid/tanh saturate)


class GradientStats(TypedDict):
    norm: float
    mean_abs: float
    max_abs: float
    nonfinite: float
    zero: float


class WeightStats(TypedDict):
    norm: float
    std: float
    mean_abs: float
    nonfinite: float
    kernel_std: float
    fan_in: float


class UpdateStats(TypedDict):
    norm: float  # |W_after - W_before|


class PenaltyStats(TypedDict):
    value: float


class LossStats(TypedDict):
    loss: float
    reg: float


class TargetStats(TypedDict):
    min: float
    max: float
    mean: float
    nonfinite: float


class PredictionStats(TypedDict):
    min: float
    max: float
    mean: float
    std: float
    nonfinite: float
    rowsum_mean: float
    rowsum_std: float


class HitStats(TypedDict):
    rate: float


def fields(stats: type) -> tuple[str, ...]:
    return tuple(stats.__annotations__)


# Statistics kind (the part after "L3." in a key, or the whole key) -> field names in vector order.
STAT_FIELDS: dict[str, tuple[str, ...]] = {
    "out": fields(ActivationStats), "pre": fields(ActivationStats), "grad": fields(GradientStats), "w": fields(WeightStats),
    "upd": fields(UpdateStats), "reg": fields(PenaltyStats), "loss": fields(LossStats), "y": fields(TargetStats),
    "y_pred": fields(PredictionStats), "hit": fields(HitStats),
}

# The line by which the Keras callback's helper (monitor_sink.py) names its run folder to the callback.
RUN_FOLDER_PREFIX = "deeplocalize-run-folder: "

# Top-level modules whose import means the script trains with Keras.
KERAS_MODULES = ("keras", "tensorflow", "tf_keras")


def is_serious(severity: str) -> bool:
    return severity in SERIOUS


def rank(severity: str) -> int:
    """0 for the most severe: sort keys and "more severe than" comparisons."""
    return SEVERITIES.index(severity)  # type: ignore[arg-type]
