"""Where runtime detectors sign up, so that a new one lives in one module with its rule:
`@runtime_detector` registers it; `detectors/__init__` imports every module of the package
and runs them in the one order below."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..findings import Finding
    from ..trace import Trace
    from .progress import Progress

RuntimeDetector = Callable[["Trace", "Progress | None"], "list[Finding]"]

# From the most specific evidence to the most generic symptom: when two detectors blame the same
# source element, the earlier one's finding is kept. Each detector by its name without `detect_`.
ORDER: tuple[str, ...] = (
    "exploding",
    "vanishing",
    "saturation",
    "dead_relu",
    "bad_init",
    "activation_smells",
    "regularization",
    "batch_size",
    "update_ratio",
    "epochs",
    "unrelated_labels",
    "unscaled_data",
    "learning_rate_decayed_away",  # before not-learning, which would blame the initial rate
    "not_learning",
)
_RUNTIME: dict[str, RuntimeDetector] = {}


def runtime_detector(fn: RuntimeDetector) -> RuntimeDetector:
    """Register a detector of a training run; its place in ORDER says which finding wins a tie."""
    name = fn.__name__.removeprefix("detect_")
    if name not in ORDER:
        raise ValueError(f"runtime detector {fn.__module__}.{fn.__qualname__}: add {name!r} to detectors.registry.ORDER")
    _RUNTIME[name] = fn
    return fn


def runtime_detectors() -> list[RuntimeDetector]:
    missing = [name for name in ORDER if name not in _RUNTIME]
    if missing:
        raise LookupError(f"detectors.registry.ORDER names detectors that are not registered: {missing}")
    return [_RUNTIME[name] for name in ORDER]
