"""The words every stage shares, defined once: severities and their order, root causes,
the statuses of a run, of a report and of a verification, and the modules that mean
"this script uses Keras". A stage that needs one of them imports it from here, so a new
severity or status cannot be spelt two ways."""

from __future__ import annotations

from typing import Literal, get_args

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
ReportStatus = Literal["ok", "crashed", "timeout", "not_keras", "syntax_error"]
REPORT_STATUSES: tuple[ReportStatus, ...] = get_args(ReportStatus)
# One fix's re-training, and the finding once its fixes were tried.
Verdict = Literal["verified", "refuted", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
Confirmation = Literal["verified", "unconfirmed", "inconclusive"]
CONFIRMATIONS: tuple[Confirmation, ...] = get_args(Confirmation)

# Top-level modules whose import means the script trains with Keras.
KERAS_MODULES = ("keras", "tensorflow", "tf_keras")


def is_serious(severity: str) -> bool:
    return severity in SERIOUS


def rank(severity: str) -> int:
    """0 for the most severe: sort keys and "more severe than" comparisons."""
    return SEVERITIES.index(severity)  # type: ignore[arg-type]
