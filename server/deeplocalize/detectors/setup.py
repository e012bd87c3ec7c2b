"""The training setup as the trace shows it, in the detectors' words: loss families, activation
ranges, optimizer defaults, data and initialization scales, update ratios, and windows of a curve."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..trace import LayerInfo, Trace
from ..vocab import LossFamily

CE_CATEGORICAL = {"categorical_crossentropy", "categoricalcrossentropy", "categorical_focal_crossentropy", "categoricalfocalcrossentropy"}
CE_SPARSE = {"sparse_categorical_crossentropy", "sparsecategoricalcrossentropy"}
CE_BINARY = {"binary_crossentropy", "binarycrossentropy", "binary_focal_crossentropy", "binaryfocalcrossentropy"}
REGRESSION = {
    "mse", "mean_squared_error", "meansquarederror", "mae", "mean_absolute_error", "meanabsoluteerror",
    "huber", "huber_loss", "huber", "log_cosh", "logcosh", "mape", "mean_absolute_percentage_error",
    "msle", "mean_squared_logarithmic_error", "meansquaredlogarithmicerror",
}
HINGE = {"hinge", "squared_hinge", "categorical_hinge", "hinge_loss"}

# Output range of each activation: (low, high).
ACTIVATION_RANGE: dict[str | None, tuple[float, float]] = {
    "sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "softmax": (0.0, 1.0), "tanh": (-1.0, 1.0),
    "relu": (0.0, math.inf), "relu6": (0.0, 6.0), "softplus": (0.0, math.inf), "elu": (-1.0, math.inf),
    "selu": (-1.76, math.inf), "exponential": (0.0, math.inf),
    "linear": (-math.inf, math.inf), None: (-math.inf, math.inf),
}
SATURATING = {"sigmoid", "tanh", "hard_sigmoid", "softsign"}
RELU_LIKE = {"relu", "relu6"}

# Keras 3 default learning rates; an optimizer used at its default rate is the
# user's choice of optimizer, a rate they typed is their choice of learning rate.
DEFAULT_LR = {
    "SGD": 0.01, "Adam": 0.001, "AdamW": 0.001, "RMSprop": 0.001, "Adagrad": 0.001, "Adadelta": 0.001,
    "Adamax": 0.001, "Nadam": 0.001, "Ftrl": 0.001, "Lion": 0.001, "Lamb": 0.001, "Muon": 0.001,
}
SLOW_BY_DEFAULT = {"Adadelta", "Adagrad", "Ftrl"}
ADAPTIVE = {"Adam", "AdamW", "RMSprop", "Adamax", "Nadam", "Lion", "Lamb", "Adagrad", "Adadelta"}
SANE_LR = {"SGD": "0.01"}


def loss_family(trace: Trace) -> LossFamily:
    """What the fit's loss computes (vocab.LossFamily).

    A built-in loss may be given as a string, an object or a function
    (`keras.losses.categorical_crossentropy`); only code in the user's files is custom.
    """
    if trace.compile is None:
        return "unknown"
    loss = trace.compile.loss
    custom = trace.compile.loss_code is not None
    kind = loss.get("kind")
    name = str(loss.get("name", "")).lower()
    if kind in ("string", "object", "function"):
        if not custom:
            families: tuple[tuple[LossFamily, set[str]], ...] = (
                ("categorical", CE_CATEGORICAL), ("sparse", CE_SPARSE), ("binary", CE_BINARY), ("regression", REGRESSION), ("hinge", HINGE))
            for family, names in families:
                if name in names:
                    return family
        if kind in ("object", "function") and custom:
            return "custom"
    return "unknown"


def from_logits(trace: Trace) -> bool:
    return bool(trace.compile and (trace.compile.loss.get("config") or {}).get("from_logits"))


def lr_info(trace: Trace) -> tuple[str, float | None, float]:
    """(optimizer class, learning rate, ratio to that optimizer's default)."""
    opt = trace.optimizer
    if opt is None:
        return "", None, 1.0
    default = DEFAULT_LR.get(opt.cls, 0.001)
    lr = opt.learning_rate
    return opt.cls, lr, (lr / default) if lr else 1.0


# A rate that something in the run raised this many times above the fit's starting rate is the
# rate the symptom happened at, not the one the optimizer was built with.
RAISED_RATE = 10.0


def rate_raised(trace: Trace) -> tuple[float, float, int] | None:
    """(the fit's starting rate, the raised rate, the first epoch that started with it) when the
    learning rate rose at least RAISED_RATE times during the fit (a schedule, a callback) after
    the fit trained at its starting rate (its loss fell before the raise)."""
    seen = sorted(trace.epoch_start_lr.items())
    if not seen or seen[0][1] <= 0:
        return None
    start = seen[0][1]
    for epoch, lr in seen[1:]:
        if lr >= RAISED_RATE * start:
            before = [e.logs.get("loss") for e in trace.epochs if e.epoch < epoch]
            before = [v for v in before if isinstance(v, float) and math.isfinite(v)]
            trained = len(before) >= 2 and before[-1] < before[0]
            return (start, lr, epoch) if trained else None
    return None


def lr_is_explicit(trace: Trace) -> bool:
    cls, lr, ratio = lr_info(trace)
    return lr is not None and abs(ratio - 1.0) > 1e-6


def window(values: np.ndarray, frac: float = 0.25, minimum: int = 3) -> np.ndarray:
    """The last `frac` of a series (at least `minimum` points), NaNs dropped."""
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return v
    n = max(minimum, int(len(v) * frac))
    return v[-n:]


def head(values: np.ndarray, frac: float = 0.1, minimum: int = 3) -> np.ndarray:
    v = values[~np.isnan(values)]
    n = max(minimum, int(len(v) * frac))
    return v[:n]


def layer_label(layer: LayerInfo) -> str:
    act = f", activation={layer.activation}" if layer.activation else ""
    return f"layer {layer.index} '{layer.name}' ({layer.cls}{act})"


def n_classes(trace: Trace) -> int | None:
    y = trace.fit.y if trace.fit else None
    out = trace.output_layer
    if y and y.get("one_hot") and y.get("shape") and len(y["shape"]) >= 2:
        return int(y["shape"][-1])
    if y and y.get("integer_valued") and y.get("n_unique") is not None and y.get("max") is not None:
        return int(max(y["n_unique"], y["max"] + 1))
    return out.units if out else None


def class_shares(trace: Trace) -> list[float] | None:
    """Each class's share of the training labels, largest first (None: not arrays, or not classes)."""
    y = trace.fit.y if trace.fit else None
    shares = y.get("class_shares") if y else None
    return shares if shares and len(shares) >= 2 else None


INDEX_INPUT_LAYERS = {"Embedding", "IntegerLookup", "StringLookup", "CategoryEncoding", "Hashing", "TextVectorization"}
SCALING_LAYERS = {"Rescaling", "Normalization", "BatchNormalization", "LayerNormalization", "Discretization"}
WEIGHTED_LAYERS = {"Dense", "Conv1D", "Conv2D", "Conv3D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose", "EinsumDense", "LSTM", "GRU", "SimpleRNN"}


def scaled_inside_model(trace: Trace) -> bool:
    """A Rescaling/Normalization layer before the first weighted layer scales the inputs in the model."""
    for layer in trace.layers:
        if layer.cls in SCALING_LAYERS:
            return True
        if layer.cls in WEIGHTED_LAYERS:
            return False
    return False


def x_scale_problem(trace: Trace) -> dict[str, Any] | None:
    """Evidence that inputs are not scaled: large magnitudes or very different feature scales.

    Inputs consumed as indices (an Embedding or lookup first) are ids, not features.
    """
    x = trace.fit.x if trace.fit else None
    if not x or x.get("max") is None:
        return None
    if trace.layers and (trace.layers[0].cls in INDEX_INPUT_LAYERS or scaled_inside_model(trace)):
        return None
    absmax = max(abs(x.get("max", 0.0)), abs(x.get("min", 0.0)))
    spread = None
    if x.get("feature_std_min_nonconst"):
        spread = x["feature_std_max"] / max(x["feature_std_min_nonconst"], 1e-12)
    large = absmax > 20.0
    uneven = spread is not None and spread > 1e3 and absmax > 5.0
    if large or uneven:
        return {"input_abs_max": round(absmax, 4), "feature_scale_spread": round(spread, 1) if spread else None, "input_std": round(x.get("std", 0.0), 4)}
    return None


def y_scale_problem(trace: Trace) -> dict[str, Any] | None:
    y = trace.fit.y if trace.fit else None
    if not y or y.get("max") is None or loss_family(trace) not in ("regression", "custom", "unknown"):
        return None
    absmax = max(abs(y["max"]), abs(y["min"]))
    if absmax > 50.0 and (y.get("n_unique") or 0) > 10:
        return {"target_abs_max": round(absmax, 3), "target_std": round(y.get("std", 0.0), 3)}
    return None


def init_scale(trace: Trace, layer: LayerInfo) -> float | None:
    """Kernel std x sqrt(fan_in) before training: ~1 for Glorot/He, 0 for zeros."""
    if layer.cls == "Embedding":
        return None
    if layer.index in trace.initial_kernels:
        kstd, fan_in = trace.initial_kernels[layer.index][:2]
        return float(kstd * math.sqrt(fan_in)) if fan_in > 1 else None
    if not trace.steps:
        return None
    kstd = trace.steps[0].get(f"L{layer.index}.w", "kernel_std")
    fan_in = trace.steps[0].get(f"L{layer.index}.w", "fan_in")
    if kstd is None or fan_in is None or fan_in <= 1:
        return None
    return float(kstd * math.sqrt(fan_in))


def init_offset(trace: Trace, layer: LayerInfo) -> float | None:
    """|kernel mean| / kernel std before training: ~0 for every standard initializer;
    above 1 the weights are mostly of one sign (e.g. RandomUniform(0, 1)), so the units
    of a layer compute nearly the same function and saturate together."""
    k = trace.initial_kernels.get(layer.index)
    if not k or len(k) < 3 or layer.cls == "Embedding" or k[1] <= 1:
        return None
    kstd, fan_in, mean = k[:3]
    if kstd <= 0 or abs(mean) * math.sqrt(fan_in) < 0.3:
        return None
    return abs(mean) / kstd


def bad_init_layers(trace: Trace) -> list[tuple[LayerInfo, float]]:
    out: list[tuple[LayerInfo, float]] = []
    if trace.continues:
        return out
    for layer in trace.trainable_layers:
        scale = init_scale(trace, layer)
        offset = init_offset(trace, layer)
        if scale is not None and (scale < 0.02 or scale > 6.0 or (offset is not None and offset > 1.0)):
            out.append((layer, scale))
    return out


def update_ratios(trace: Trace, layer: LayerInfo) -> np.ndarray:
    upd = trace.series(f"L{layer.index}.upd", "norm")
    w = trace.series(f"L{layer.index}.w", "norm")
    with np.errstate(divide="ignore", invalid="ignore"):
        return upd / np.maximum(w, 1e-12)


def median_log_update_ratio(trace: Trace) -> float | None:
    """Median over trainable layers of log10(|dW|/|W|) over the run (TheDeepChecker's [-4, -1])."""
    meds = []
    for layer in trace.trainable_layers:
        r = update_ratios(trace, layer)
        r = r[np.isfinite(r) & (r > 0)]
        if len(r):
            meds.append(float(np.median(np.log10(r))))
    return float(np.median(meds)) if meds else None
