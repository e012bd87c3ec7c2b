"""Where runtime detectors sign up, so that a new one lives in one module with its rule:
`@runtime_detector(order)` registers it; `detectors/__init__` imports every module of
the package and runs them by `order`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..findings import Finding
    from ..trace import Trace
    from .progress import Progress

RuntimeDetector = Callable[["Trace", "Progress | None"], "list[Finding]"]
_RUNTIME: dict[str, tuple[int, RuntimeDetector]] = {}


def runtime_detector(order: int) -> Callable[[RuntimeDetector], RuntimeDetector]:
    """Register a detector of a training run. `order`: from the most specific evidence
    (low) to the most generic symptom (high); when two detectors blame the same source
    element, the earlier one's finding is kept."""

    def register(fn: RuntimeDetector) -> RuntimeDetector:
        _RUNTIME[f"{fn.__module__}.{fn.__qualname__}"] = (order, fn)
        return fn

    return register


def runtime_detectors() -> list[RuntimeDetector]:
    return [fn for _, fn in sorted(_RUNTIME.values(), key=lambda item: item[0])]
