"""A script that raised: anchor the error at the user frame that raised it and
infer a root cause from what the static rules already know."""

from __future__ import annotations

import dataclasses
import re

from ..findings import Finding, FixSpec, FrameTarget, Rename
from ..rules import rule
from ..trace import Trace

KERAS3 = rule(
    "keras3-incompatible", "run", "error", "crash",
    "A Keras 2 idiom that Keras 3 rejects (`lr=`, `nb_epoch=`, `keras.layers.core`, ...). Not a DNN fault.")
TRAINING_CRASHED = rule(
    "training-crashed", "run", "error", "crash",
    "The script raised, and the checks before training explain why (e.g. integer labels with categorical cross-entropy):",
    details="the range is the innermost frame in your code, the root cause and fixes are those of the explaining check.",
    causes=("loss", "labels", "activation", "architecture"))
SCRIPT_CRASHED = rule(
    "script-crashed", "run", "error", "crash",
    "The script raised; the range is the innermost frame in your code.")

AFTER_CAPPED_FIT = rule(
    "crashed-after-capped-fit", "run", "information", "crash",
    "The script raised after a fit that the analysis cut short (its epoch cap): code after training that expects every epoch "
    "(`history.history['loss'][99]`) fails under the cap, so nothing here is blamed on the script.",
    details="Raise `--max-epochs` / `deeplocalize.maxEpochs` to run the script to its end. The range is the line that raised.")

# Keras 2 keyword -> Keras 3 keyword.
KERAS2_KWARGS = {"lr": "learning_rate", "nb_epoch": "epochs", "init": "kernel_initializer", "output_dim": "units",
                 "W_regularizer": "kernel_regularizer", "b_regularizer": "bias_regularizer", "nb_filter": "filters", "border_mode": "padding"}
KERAS2_MODULES = ("keras.layers.core", "keras.utils.np_utils", "np_utils", "keras.layers.convolutional", "keras.wrappers", "keras.layers.recurrent", "keras.engine")
_KW_RE = re.compile(r"(?:[Uu]nrecognized keyword arguments?[^{]*|[Aa]rgument\(s\) not recognized: |unexpected keyword argument )[{]?['\"]?(\w+)")


def _clean_message(message: str) -> str:
    lines = [l.strip() for l in message.strip().splitlines() if l.strip()]
    keep = [l for l in lines if not l.startswith(("File ", "Traceback", "Node:", "[[", "Stack trace", "Detected at node"))]
    text = " ".join(keep[:3]) if keep else (lines[0] if lines else "")
    return text[:400]


def detect_crash(trace: Trace, static_findings: list[Finding]) -> list[Finding]:
    crash = trace.crash
    if crash is None:
        return []
    frame = crash.frames[-1] if crash.frames else None
    msg = _clean_message(crash.message)
    ev = {"exception": crash.exc_type, "message": msg}
    target = FrameTarget(frame=frame) if frame else FrameTarget()
    m = _KW_RE.search(crash.message)
    if m and m.group(1) in KERAS2_KWARGS:
        old = m.group(1)
        new = KERAS2_KWARGS[old]
        return [KERAS3.finding(
            f"Not valid Keras 3: the keyword '{old}' was renamed '{new}'. ({crash.exc_type}: {msg})",
            target,
            evidence=ev,
            fixes=[FixSpec(f"Rename '{old}' to '{new}'", Rename(old, new))],
        )]
    if crash.exc_type in ("ModuleNotFoundError", "ImportError", "AttributeError") and any(mod.split(".")[-1] in crash.message for mod in KERAS2_MODULES + ("predict_classes",)):
        return [KERAS3.finding(f"Not valid Keras 3 (a Keras 2 API): {crash.exc_type}: {msg}", target, evidence=ev, fixes=[])]
    inferred = next((f for f in static_findings if f.severity == "error"), None)
    capped = trace.fit_end is not None and trace.fit_end.get("reason") == "capped" and trace.fit is not None
    if inferred is None and capped:
        return [AFTER_CAPPED_FIT.finding(
            f"{crash.exc_type}: {msg} — raised after training, which the analysis cut at {trace.fit.epochs} of the "
                f"{trace.fit.epochs_requested} epochs the fit asks for; to run the script to its end, raise --max-epochs.",
            target, evidence={**ev, "epochs_analyzed": trace.fit.epochs, "epochs_requested": trace.fit.epochs_requested}, fixes=[])]
    if inferred is not None:
        ev["inferred_from"] = inferred.code
        fixes = [dataclasses.replace(f, target=f.target or inferred.target) for f in inferred.fixes]
        return [TRAINING_CRASHED.finding(
            f"{crash.exc_type}: {msg} — {inferred.message}",
            target,
            root_cause=inferred.root_cause,
            layer=inferred.layer,
            evidence=ev,
            fixes=fixes,
        )]
    return [SCRIPT_CRASHED.finding(f"{crash.exc_type}: {msg}", target, evidence=ev, fixes=[])]
