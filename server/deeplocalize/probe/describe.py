"""What the probe says about the model and the data before training: layers (class,
activation, units, shapes, initializers, where they were created), the loss, the optimizer
and the arrays given to `fit`. Plain reads of Keras objects; nothing here changes them."""

from __future__ import annotations

from typing import Any

import numpy as np
import keras

from ..vocab import KERAS_MODULES

_TF_ALIASES = {"softmax_v2": "softmax", "log_softmax_v2": "log_softmax", "relu6_v2": "relu6"}


# Layers that are nothing but an activation: the activation they apply, so the
# detectors see `Dense(10)` + `Softmax()` as the softmax output it is.
_ACTIVATION_LAYERS = {"Softmax": "softmax", "ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu", "PReLU": "prelu"}


# Operations that can turn finite inputs into NaN/Inf, as they appear in bytecode.
_RISKY_NAMES = {"log", "sqrt", "rsqrt", "reciprocal", "pow", "power", "exp", "divide", "truediv", "div", "div_no_nan"}


_RISKY_BINOPS = {"/", "**", "//", "/=", "**="}


def _from_keras(layer: Any) -> bool:
    """A layer class Keras (or TensorFlow) defines, as opposed to the user's own."""
    return type(layer).__module__.split(".")[0] in KERAS_MODULES


def activation_name(fn: Any) -> str | None:
    """Keras' name for an activation; TensorFlow functions used as activations carry
    versioned names (`tf.nn.softmax` is `softmax_v2`)."""
    if fn is None:
        return None
    name = str(getattr(fn, "__name__", None) or type(fn).__name__).lower()
    return _TF_ALIASES.get(name, name)


def layer_activation(layer: Any) -> str | None:
    cls = type(layer).__name__
    if cls == "ReLU" and getattr(layer, "negative_slope", 0):
        return "leaky_relu"
    if cls == "ReLU" and getattr(layer, "max_value", None) == 6:
        return "relu6"
    if cls in _ACTIVATION_LAYERS:
        return _ACTIVATION_LAYERS[cls]
    return activation_name(getattr(layer, "activation", None))


def _inbound(layer: Any, index_of: dict[int, int]) -> list[int]:
    """Indices of the layers feeding this one in a functional/Sequential graph."""
    found: list[int] = []
    try:
        for node in getattr(layer, "_inbound_nodes", []) or []:
            for parent in getattr(node, "parent_nodes", []) or []:
                op = getattr(parent, "operation", None)
                if op is not None and id(op) in index_of and index_of[id(op)] not in found:
                    found.append(index_of[id(op)])
    except Exception:  # noqa: BLE001 - graph introspection is best effort
        return []
    return found


def _user_code_of(layer: Any) -> dict[str, Any] | None:
    """User code that computes this layer's output: a custom call() or a Lambda's function."""
    if type(layer).__name__ == "Lambda":
        return code_location(getattr(layer, "function", None))
    if _from_keras(layer):
        return None
    return code_location(type(layer).call)


def _describe_initializer(init: Any) -> dict[str, Any] | None:
    if init is None:
        return None
    try:
        config = init.get_config() if hasattr(init, "get_config") else {}
    except Exception:  # noqa: BLE001 - a user initializer may not serialize
        config = {}
    return {"class": type(init).__name__, "config": {k: v for k, v in config.items() if isinstance(v, (int, float, str, type(None)))}}


def _describe_regularizer(reg: Any) -> dict[str, Any] | None:
    if reg is None:
        return None
    try:
        config = reg.get_config()
    except Exception:  # noqa: BLE001
        config = {}
    return {"class": type(reg).__name__, "config": {k: float(v) for k, v in config.items() if isinstance(v, (int, float))}}


def _shape_of(layer: Any) -> list | None:
    try:
        out = layer.output
        shape = getattr(out, "shape", None)
        return [d if d is None else int(d) for d in shape] if shape is not None else None
    except Exception:  # noqa: BLE001 - subclassed layers have no symbolic output
        return None


def weight_ids(model: Any) -> list[int]:
    """Identities of the model's weights: a later fit of another model that shares them
    (a pretrained base reused in a new model) continues this fit's training."""
    try:
        return [id(v) for v in model.weights] if getattr(model, "built", False) else []
    except Exception:  # noqa: BLE001
        return []


def initial_kernels(layers: list[Any]) -> dict[str, list[float]]:
    """Kernel std, fan-in and mean of each layer before any update (read eagerly at fit start)."""
    out: dict[str, list[float]] = {}
    for i, layer in enumerate(layers):
        kernel = getattr(layer, "kernel", None)
        if kernel is None and not _from_keras(layer):
            kernel = next((w for w in layer.trainable_weights if len(w.shape) >= 2), None)
        shape = getattr(kernel, "shape", None)
        if kernel is None or shape is None or len(shape) < 2:
            continue
        k = np.asarray(keras.ops.convert_to_numpy(kernel), dtype=np.float64)
        out[str(i)] = [float(k.std()), float(np.prod(shape[:-1])), float(k.mean())]
    return out


def _risky_ops(code: Any) -> list[str]:
    """Names of risky operations used by a code object (and the lambdas/comprehensions inside it)."""
    import dis

    found: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        found.update(n for n in c.co_names if n in _RISKY_NAMES)
        for ins in dis.get_instructions(c):
            if ins.opname in ("BINARY_OP", "BINARY_TRUE_DIVIDE", "BINARY_POWER", "INPLACE_TRUE_DIVIDE") and (ins.argrepr in _RISKY_BINOPS or ins.opname != "BINARY_OP"):
                found.add(ins.argrepr or ins.opname)
        stack.extend(k for k in c.co_consts if hasattr(k, "co_code"))
    return sorted(found)


def code_location(fn: Any) -> dict[str, Any] | None:
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    from .sites import is_user_file

    if not is_user_file(code.co_filename):
        return None
    import os

    try:
        risky = _risky_ops(code)
    except Exception:  # noqa: BLE001 - bytecode inspection is best effort
        risky = []
    params = [n for n in code.co_varnames[:code.co_argcount] if n not in ("self", "cls")]
    out = {"file": os.path.abspath(code.co_filename), "line": code.co_firstlineno, "function": code.co_name, "risky": risky, "params": params}
    # Numbers a closure captured (a loss factory's `alpha`, `gamma`): the hyperparameters it computes with.
    closure = getattr(fn, "__closure__", None) or ()
    free = {}
    for name, cell in zip(code.co_freevars, closure):
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            free[name] = float(value)
    if free:
        out["free"] = free
    return out


def _custom_init_code(layer: Any) -> dict[str, Any] | None:
    """Where a custom layer sets its defaults (`__init__`) and creates its weights (`build`)."""
    if _from_keras(layer):
        return None
    init = code_location(type(layer).__init__)
    build = code_location(getattr(type(layer), "build", None))
    if init is None and build is None:
        return None
    return {"init": init, "build": build, "class": type(layer).__name__}


def describe_loss(loss: Any) -> dict[str, Any]:
    if loss is None:
        return {"kind": "none"}
    if isinstance(loss, str):
        return {"kind": "string", "name": loss.lower()}
    if isinstance(loss, (list, tuple, dict)):
        return {"kind": "multi"}
    if isinstance(loss, keras.losses.Loss):
        config = {}
        try:
            config = {k: v for k, v in loss.get_config().items() if isinstance(v, (int, float, str, bool, type(None)))}
        except Exception:  # noqa: BLE001
            pass
        wrapped = getattr(loss, "fn", None)
        code = code_location(type(loss).call) or (code_location(wrapped) if wrapped is not None else None)
        return {"kind": "object", "name": type(loss).__name__, "config": config, "code": code}
    if callable(loss):
        return {"kind": "function", "name": getattr(loss, "__name__", "loss"), "code": code_location(loss)}
    return {"kind": "unknown", "name": type(loss).__name__}


def describe_optimizer(opt: Any, site: list | None) -> dict[str, Any] | None:
    if opt is None:
        return None
    lr = None
    try:
        lr = float(keras.ops.convert_to_numpy(opt.learning_rate))
    except Exception:  # noqa: BLE001 - schedules
        pass
    config = {}
    try:
        config = {k: v for k, v in opt.get_config().items() if isinstance(v, (int, float, str, bool, type(None)))}
    except Exception:  # noqa: BLE001
        pass
    return {"class": type(opt).__name__, "learning_rate": lr, "config": config, "site": site or []}


def describe_array(value: Any, labels: bool = False) -> dict[str, Any] | None:
    """Summary of a fit argument given as an array; None for datasets and generators."""
    if value is None or isinstance(value, (dict,)) or hasattr(value, "element_spec"):
        return None
    if isinstance(value, (list, tuple)) and value and hasattr(value[0], "shape") and len(np.shape(value[0])) > 0 and not labels:
        value = value[0]
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001
        return None
    if arr.dtype.kind not in "biuf" or arr.size == 0:
        return {"shape": list(arr.shape), "dtype": str(arr.dtype)}
    a = arr.astype(np.float64)
    finite = np.isfinite(a)
    af = np.where(finite, a, 0.0)
    info: dict[str, Any] = {
        "shape": list(arr.shape),
        "n": int(arr.shape[0]) if arr.ndim else 1,
        "dtype": str(arr.dtype),
        "integer_valued": bool(np.all(np.equal(np.mod(af, 1), 0))),
        "min": float(af.min()),
        "max": float(af.max()),
        "mean": float(af.mean()),
        "std": float(af.std()),
        "nonfinite": float(1 - finite.mean()),
    }
    if arr.ndim >= 2:
        flat = af.reshape(arr.shape[0], -1)
        f_std = flat.std(axis=0)
        f_mean = np.abs(flat.mean(axis=0))
        f_absmax = np.abs(flat).max(axis=0)
        nonconst = f_std > 1e-12
        info["feature_std_max"] = float(f_std.max())
        info["feature_std_min_nonconst"] = float(f_std[nonconst].min()) if nonconst.any() else 0.0
        info["feature_absmax_max"] = float(f_absmax.max())
        info["feature_absmax_median"] = float(np.median(f_absmax))
        info["feature_mean_abs_max"] = float(f_mean.max())
        info["constant_features"] = int((~nonconst).sum())
        info["n_features"] = int(flat.shape[1])
        if labels:
            rows = flat.sum(axis=1)
            binary = bool(np.all((flat == 0) | (flat == 1)))
            info["one_hot"] = bool(binary and np.allclose(rows, 1.0))
            # Several 1s in some rows: multi-label targets, not one class per sample.
            info["multi_hot"] = bool(binary and flat.shape[1] > 1 and rows.max() > 1 and not info["one_hot"])
            info["max_labels_per_row"] = float(rows.max())
    if labels:
        uniq, counts = np.unique(af[: min(len(af), 100000)], return_counts=True)
        info["n_unique"] = int(min(len(uniq), 100000))
        if len(uniq) <= 1000:
            info["unique_values"] = uniq[:50].tolist()
        shares = _class_shares(af, info, counts)
        if shares is not None:
            info["class_shares"] = shares
    return info


def _class_shares(labels: np.ndarray, info: dict[str, Any], counts: np.ndarray) -> list[float] | None:
    """Each class's share of the labels, largest first: the accuracy of always answering the
    majority and the loss of always answering the prior are what a stuck classifier reaches,
    and on imbalanced classes both differ from 1/k and log k."""
    if info.get("one_hot") and labels.ndim == 2 and labels.shape[1] <= 100:
        shares = labels.mean(axis=0)
    elif info.get("integer_valued") and (labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1)) and len(counts) <= 100:
        shares = counts / max(1, counts.sum())
    else:
        return None
    return [round(float(v), 5) for v in sorted(shares, reverse=True)]


def describe_layers(model: Any, layers: list[Any], sites: dict[int, list]) -> list[dict[str, Any]]:
    """Each probed layer as the trace knows it: class, activation, units, shape, initializer, where it was created."""
    out_ids = set()
    try:
        for t in model.outputs or []:
            hist = getattr(t, "_keras_history", None)
            if hist is not None:
                out_ids.add(id(hist[0]))
    except Exception:  # noqa: BLE001 - subclassed models have no symbolic outputs
        pass
    described = []
    index_of = {id(layer): i for i, layer in enumerate(layers)}
    for i, layer in enumerate(layers):
        described.append(
            {
                "index": i,
                "name": layer.name,
                "class": type(layer).__name__,
                "activation": layer_activation(layer),
                "units": getattr(layer, "units", None) or getattr(layer, "filters", None),
                "rate": getattr(layer, "rate", None) if isinstance(getattr(layer, "rate", None), (int, float)) else None,
                "output_shape": _shape_of(layer),
                "n_params": int(sum(int(np.prod(v.shape)) for v in layer.weights)) if layer.built else 0,
                "kernel_initializer": _describe_initializer(getattr(layer, "kernel_initializer", None)),
                "kernel_regularizer": _describe_regularizer(getattr(layer, "kernel_regularizer", None)),
                "activity_regularizer": _describe_regularizer(getattr(layer, "activity_regularizer", None)),
                "bias_initializer": _describe_initializer(getattr(layer, "bias_initializer", None)),
                "is_output": id(layer) in out_ids,
                "custom": not _from_keras(layer),
                "call_code": _user_code_of(layer),
                "init_code": _custom_init_code(layer),
                "inputs": _inbound(layer, index_of),
                "inner": index_of.get(id(getattr(layer, "layer", None))) if type(layer).__name__ == "TimeDistributed" else None,
                "site": sites.get(id(layer), []),
            }
        )
    if not out_ids and described:
        described[-1]["is_output"] = True
    return described


_HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


def describe_schedules(optimizer: Any, callbacks: list) -> list[dict[str, Any]]:
    """What may change the learning rate while the fit runs: a LearningRateScheduler's
    function, a callback class of the user's (its epoch/batch hooks), a schedule object given
    as the optimizer's rate (its class and numeric settings; a user's class: its `__call__`)."""
    out: list[dict[str, Any]] = []
    for cb in callbacks or []:
        if isinstance(cb, keras.callbacks.LearningRateScheduler):
            fn = cb.schedule
            out.append({"kind": "callback", "name": getattr(fn, "__name__", type(fn).__name__), "code": code_location(fn)})
        elif not _from_keras(cb):
            hooks = [code_location(getattr(type(cb), h)) for h in _HOOKS if h in vars(type(cb))]
            hooks = [h for h in hooks if h is not None]
            if hooks:
                out.append({"kind": "callback_class", "name": type(cb).__name__, "code": hooks[0], "hooks": hooks})
    rate = getattr(optimizer, "_learning_rate", None)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        config = {}
        try:
            config = {k: v for k, v in rate.get_config().items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        except Exception:  # noqa: BLE001
            pass
        code = None if _from_keras(rate) else code_location(type(rate).__call__)
        out.append({"kind": "schedule", "name": type(rate).__name__, "config": config, "code": code})
    return out


def current_learning_rate(model: Any) -> float | None:
    """The rate the next step uses (a schedule evaluated at the optimizer's step)."""
    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except Exception:  # noqa: BLE001 - no optimizer yet
        return None
