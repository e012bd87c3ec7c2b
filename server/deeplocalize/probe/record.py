"""What a script reports about itself, recorded while it runs to its end.

A fix is only right if the whole script is right after it: `evaluate` and
`predict` after `fit` must still see data on the scale the model was trained
on, and the script's own numbers must not get worse. In this mode the worker
puts no probe on the layers; it only wraps `Model.fit` (the last epoch's logs,
epochs capped when asked) and the script's own `Model.evaluate` calls (named
results), and lets the script run on to its last line.
"""

from __future__ import annotations

import math
from typing import Any, Callable

Send = Callable[..., None]


def _number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else float("nan")


def _target_scale(y: Any) -> float | None:
    """Std of the targets a fit/evaluate saw: errors in target units are compared relative
    to it, so a fix that standardizes regression targets is judged on the same footing."""
    import numpy as np

    try:
        arr = np.asarray(y, dtype=np.float64)
    except Exception:  # noqa: BLE001 - datasets, dicts, generators: no scale
        return None
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        return None
    return float(arr.std())


def _samples(y: Any, validation_split: float = 0.0) -> int | None:
    """How many samples an accuracy was measured on (one sample's flip is not evidence)."""
    try:
        n = len(y)
    except TypeError:
        return None
    return max(1, int(n * (1.0 - (validation_split or 0.0))))


def _loss_name(model: Any) -> str:
    loss = getattr(model, "loss", None)
    return getattr(loss, "__name__", None) or getattr(loss, "name", None) or str(loss)


def install(send: Send, max_epochs: int | None) -> None:
    import keras

    fit, evaluate = keras.Model.fit, keras.Model.evaluate
    depth = {"fit": 0}

    def recorded_fit(self, *args, **kwargs):  # noqa: ANN001
        if max_epochs:
            if len(args) > 3:
                args = (*args[:3], min(int(args[3]), max_epochs), *args[4:])
            else:
                kwargs["epochs"] = min(int(kwargs.get("epochs", 1)), max_epochs)
        depth["fit"] += 1
        try:
            history = fit(self, *args, **kwargs)
        finally:
            depth["fit"] -= 1
        logs = {k: _number(v[-1]) for k, v in (getattr(history, "history", None) or {}).items() if v}
        y = args[1] if len(args) > 1 else kwargs.get("y")
        send("script_fit", logs=logs, loss=_loss_name(self), target_scale=_target_scale(y),
             samples=_samples(y, kwargs.get("validation_split", 0.0)))
        return history

    def recorded_evaluate(self, *args, **kwargs):  # noqa: ANN001
        if depth["fit"]:  # fit's own validation pass
            return evaluate(self, *args, **kwargs)
        wants_dict = bool(kwargs.pop("return_dict", False))
        logs = evaluate(self, *args, return_dict=True, **kwargs)
        y = args[1] if len(args) > 1 else kwargs.get("y")
        send("script_evaluate", results={k: _number(v) for k, v in logs.items()}, loss=_loss_name(self), target_scale=_target_scale(y),
             samples=_samples(y))
        return logs if wants_dict else self._flatten_metrics_in_order(logs)

    keras.Model.fit = recorded_fit
    keras.Model.evaluate = recorded_evaluate
