"""Patches on Keras 3 internals that turn every `fit` into a probed run.

The patches are class-level and only *collect* while a train step is being
traced, so the real batch flows through the real forward/backward pass and the
statistics become extra outputs of the compiled step (stripped again before
callbacks and the progress bar see the logs).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import tensorflow as tf
import keras
from keras.src.layers.layer import Layer
from keras.src.optimizers.base_optimizer import BaseOptimizer
from keras.src.trainers.trainer import Trainer
from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

from ..vocab import KERAS_MODULES
from . import stats as S
from .channel import Channel
from .sites import user_call_chain

_STATS_KEY = "__deeplocalize_stats__"


class AnalysisDone(BaseException):
    """Raised after the first probed `fit` returns: the rest of the script is not needed."""


class _Collector:
    """Tensors gathered while one train step is traced."""

    def __init__(self, graph: Any, layers: list[Any]) -> None:
        self.graph = graph
        self.layers = layers
        self.layer_ids = {id(layer): i for i, layer in enumerate(layers)}
        self.outputs: dict[int, tf.Tensor] = {}
        self.pre: dict[int, tf.Tensor] = {}
        self.grads: dict[int, list] = {}
        self.weights_before: dict[int, list] = {}
        self.weights_after: dict[int, list] = {}
        self.loss: tf.Tensor | None = None
        self.y: tf.Tensor | None = None
        self.y_pred: tf.Tensor | None = None

    def var_owner(self) -> dict[int, int]:
        """Variable id -> layer index, computed when asked: layers may be built mid-trace."""
        owner: dict[int, int] = {}
        for i, layer in enumerate(self.layers):
            for v in getattr(layer, "_trainable_variables", []) or []:
                owner.setdefault(id(v), i)
        return owner

    def owns(self, tensor: Any) -> bool:
        return isinstance(tensor, tf.Tensor) and getattr(tensor, "graph", None) is self.graph



def _from_keras(layer: Any) -> bool:
    """A layer class Keras (or TensorFlow) defines, as opposed to the user's own."""
    return type(layer).__module__.split(".")[0] in KERAS_MODULES


_Part = tuple[str, int, Callable[[], tf.Tensor]]


def _layer_parts(i: int, layer: Any, col: "_Collector", sampled: list[_Part], always: list[_Part], reg_total: list[tf.Tensor]) -> None:
    """One layer's statistics, as (name, size, in-graph computation): activations, gradients,
    weights and update on sampled steps; its regularization penalty on every step."""
    if i in col.outputs:
        sampled.append((f"L{i}.out", len(S.ACT_FIELDS), lambda t=col.outputs[i]: S.activation_stats(t)))
    if i in col.pre:
        sampled.append((f"L{i}.pre", len(S.ACT_FIELDS), lambda t=col.pre[i]: S.activation_stats(t)))
    if i in col.grads:
        sampled.append((f"L{i}.grad", len(S.GRAD_FIELDS), lambda g=col.grads[i]: S.gradient_stats(g)))
        kernel = getattr(layer, "kernel", None)
        # Weights *before* this step's update, so step 0 shows the initialization.
        before = col.weights_before[i]
        if kernel is not None and before:
            kernel_t = before[0]
        else:  # a custom layer's own weight matrix (add_weight), if it has one
            kernel_t = next((b for b in before if len(b.shape) >= 2), None)
        sampled.append((f"L{i}.w", len(S.WEIGHT_FIELDS), lambda w=before, k=kernel_t: S.weight_stats(w, k)))
        sampled.append((f"L{i}.upd", len(S.UPDATE_FIELDS), lambda b=before, a=col.weights_after[i]: S.update_norm(b, a)))
    try:
        has_reg = getattr(layer, "kernel_regularizer", None) is not None or getattr(layer, "bias_regularizer", None) is not None
        reg = list(layer.losses) if has_reg else []
    except Exception:  # noqa: BLE001
        reg = []
    if reg:
        value = tf.add_n([tf.cast(tf.reshape(r, []), tf.float32) for r in reg])
        reg_total.append(value)
        always.append((f"L{i}.reg", 1, lambda v=value: tf.reshape(v, [1])))

def _first_tensor(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return _first_tensor(value[0]) if value else None
    if isinstance(value, dict):
        return _first_tensor(next(iter(value.values()))) if value else None
    return value


def activation_name(fn: Any) -> str | None:
    """Keras' name for an activation; TensorFlow functions used as activations carry
    versioned names (`tf.nn.softmax` is `softmax_v2`)."""
    if fn is None:
        return None
    name = str(getattr(fn, "__name__", None) or type(fn).__name__).lower()
    return _TF_ALIASES.get(name, name)


_TF_ALIASES = {"softmax_v2": "softmax", "log_softmax_v2": "log_softmax", "relu6_v2": "relu6"}


# Layers that are nothing but an activation: the activation they apply, so the
# detectors see `Dense(10)` + `Softmax()` as the softmax output it is.
_ACTIVATION_LAYERS = {"Softmax": "softmax", "ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu", "PReLU": "prelu"}


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
        return _code_location(getattr(layer, "function", None))
    if _from_keras(layer):
        return None
    return _code_location(type(layer).call)


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


class Probe:
    """Owns the patches, the per-run state and the event channel."""

    def __init__(self, channel: Channel, max_epochs: int | None, fetch_every: int = 1, max_fits: int = 1) -> None:
        self.channel = channel
        self.max_epochs = max_epochs
        self.max_fits = max(1, max_fits)
        self.trained_models: set[int] = set()
        self.layouts: list[list[tuple[str, int]]] = []
        self.fetch_every = max(1, fetch_every)
        self.sites: dict[int, list] = {}
        self.optimizer_sites: dict[int, list] = {}
        self.collector: _Collector | None = None
        self.reset()
        self.started = time.monotonic()
        self._originals: list[tuple[Any, str, Any]] = []

    def reset(self) -> None:
        """Lets the next fit be probed as if it were the first (benchmarks, tests)."""
        self.fit_count = 0
        self.in_fit = False
        self.begin_fit()

    def begin_fit(self) -> None:
        """Per-fit state. Layouts are kept: a model fitted again reuses its traced step."""
        self.active_model: Any = None
        self.layers: list[Any] = []
        self.epoch = self.step = self.global_step = 0
        # Per-layer statistics on every step of the first `sample_first` steps, then every `sample_every`-th.
        self.sample_every, self.sample_first = 4, 20

    # ----------------------------------------------------------------- patching
    def install(self) -> None:
        self._patch(Layer, "__init__", self._recording_init(self.sites))
        self._patch(Layer, "__call__", self._wrap_layer_call)
        self._patch(BaseOptimizer, "__init__", self._recording_init(self.optimizer_sites))
        self._patch(BaseOptimizer, "apply", self._wrap_optimizer_apply)
        self._patch(Trainer, "_compute_loss", self._wrap_compute_loss)
        self._patch(Trainer, "compile", self._wrap_compile)
        self._patch(TensorFlowTrainer, "fit", self._wrap_fit)
        self._patch(TensorFlowTrainer, "make_train_function", self._wrap_make_train_function)

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()

    def _patch(self, owner: Any, name: str, factory: Callable[[Any], Any]) -> None:
        original = owner.__dict__[name]
        self._originals.append((owner, name, original))
        wrapped = factory(original)
        wrapped.__name__ = getattr(original, "__name__", name)
        wrapped.__doc__ = getattr(original, "__doc__", None)
        if name != "__init__":
            # Keras' auto-config compares inspect.signature (which follows
            # __wrapped__) with getfullargspec (which does not) for classes that
            # inherit __init__: the two must agree, so __init__ keeps its own.
            wrapped.__wrapped__ = original
        setattr(owner, name, wrapped)

    # --------------------------------------------------------------- creation
    @staticmethod
    def _recording_init(sites: dict[int, list]) -> Callable[[Any], Any]:
        """An __init__ wrapper that records, once per object, the user code that constructed it."""

        def factory(original: Any) -> Any:
            # The first parameter must be named `self`: Keras' auto-config inspects it.
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                if id(self) not in sites:
                    sites[id(self)] = user_call_chain(skip_self=self)
                original(self, *args, **kwargs)

            return __init__

        return factory

    # ----------------------------------------------------------------- tracing
    def _wrap_layer_call(self, original: Any) -> Any:
        probe = self

        def __call__(layer: Any, *args: Any, **kwargs: Any) -> Any:
            out = original(layer, *args, **kwargs)
            col = probe.collector
            if col is not None:
                idx = col.layer_ids.get(id(layer))
                if idx is not None and idx not in col.outputs:
                    t = _first_tensor(out)
                    if col.owns(t) and t.dtype.is_floating:
                        col.outputs[idx] = t
            return out

        return __call__

    def _wrap_optimizer_apply(self, original: Any) -> Any:
        probe = self

        def apply(opt: Any, grads: Any, trainable_variables: Any = None) -> Any:
            col = probe.collector
            variables = trainable_variables if trainable_variables is not None else getattr(opt, "_trainable_variables", None)
            if col is None or not variables:
                return original(opt, grads, trainable_variables)
            grads = list(grads)
            variables = list(variables)
            by_layer: dict[int, list[int]] = {}
            owners = col.var_owner()
            for i, v in enumerate(variables):
                owner = owners.get(id(v))
                if owner is not None and grads[i] is not None:
                    by_layer.setdefault(owner, []).append(i)
            for owner, idxs in by_layer.items():
                col.grads[owner] = [grads[i] for i in idxs]
                col.weights_before[owner] = [tf.identity(variables[i].value) for i in idxs]
            result = original(opt, grads, trainable_variables)
            for owner, idxs in by_layer.items():
                col.weights_after[owner] = [tf.identity(variables[i].value) for i in idxs]
            return result

        return apply

    def _wrap_compute_loss(self, original: Any) -> Any:
        probe = self

        def _compute_loss(model: Any, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None, training: bool = True) -> Any:
            loss = original(model, x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
            col = probe.collector
            if col is not None and training and col.loss is None:
                col.loss = loss
                yt, pt = _first_tensor(y), _first_tensor(y_pred)
                if col.owns(yt):
                    col.y = yt
                if col.owns(pt):
                    col.y_pred = pt
            return loss

        return _compute_loss

    # ---------------------------------------------------------- compile & fit
    def _wrap_compile(self, original: Any) -> Any:
        probe = self

        def compile(model: Any, *args: Any, **kwargs: Any) -> Any:
            site = user_call_chain()
            result = original(model, *args, **kwargs)
            given = kwargs.get("optimizer", args[0] if args else None)
            if not isinstance(given, BaseOptimizer) and getattr(model, "optimizer", None) is not None:
                probe.optimizer_sites[id(model.optimizer)] = []
            if site:
                probe._send_compile(model, site, kwargs, args)
            return result

        return compile

    def _send_compile(self, model: Any, site: list, kwargs: dict, args: tuple) -> None:
        loss = kwargs.get("loss", args[1] if len(args) > 1 else None)
        optimizer = getattr(model, "optimizer", None)
        self.channel.send(
            "compile",
            site=site,
            loss=describe_loss(loss),
            optimizer=describe_optimizer(optimizer, self.optimizer_sites.get(id(optimizer))),
            optimizer_given_as=type(kwargs.get("optimizer", args[0] if args else None)).__name__,
            metrics=[str(getattr(m, "name", m)) for m in (kwargs.get("metrics") or [])] if isinstance(kwargs.get("metrics"), (list, tuple)) else [],
            custom_train_step=type(model).train_step is not TensorFlowTrainer.train_step,
        )

    def _wrap_fit(self, original: Any) -> Any:
        probe = self

        def fit(model: Any, *args: Any, **kwargs: Any) -> Any:
            site = user_call_chain()
            if probe.in_fit or not site or probe.fit_count >= probe.max_fits:
                return original(model, *args, **kwargs)
            probe.begin_fit()
            probe.fit_count += 1
            continues = id(model) in probe.trained_models
            probe.trained_models.add(id(model))
            args, kwargs, requested, effective = probe._cap_epochs(args, kwargs)
            probe._send_fit(model, site, args, kwargs, requested, effective, continues)
            callbacks = list(kwargs.get("callbacks") or [])
            callbacks.append(_EpochReporter(probe))
            kwargs["callbacks"] = callbacks
            probe.active_model = model
            if getattr(model, "built", False) and not probe.layers:
                try:
                    layers = probe._probed_layers(model)
                    probe.channel.send("model_preview", layers=probe._describe_layers(model, layers))
                    if not continues:
                        probe.channel.send("initial_weights", kernels=_initial_kernels(layers))
                except Exception:  # noqa: BLE001 - a preview is optional
                    pass
            reason = "completed"
            probe.in_fit = True
            try:
                history = original(model, *args, **kwargs)
            finally:
                probe.in_fit = False
                if model.stop_training and probe.epoch + 1 < effective:
                    reason = "stopped"
            if effective < requested and reason == "completed":
                reason = "capped"
            probe.channel.send("fit_end", reason=reason, epochs_run=probe.epoch + 1, seconds=time.monotonic() - probe.started)
            probe.channel.flush()
            if probe.fit_count >= probe.max_fits:
                raise AnalysisDone()
            # Later fits (fine-tuning, a second model) are analyzed too: the script goes on.
            return history

        return fit

    def _cap_epochs(self, args: tuple, kwargs: dict) -> tuple[tuple, dict, int, int]:
        args = list(args)
        if "epochs" in kwargs:
            requested = int(kwargs["epochs"])
        elif len(args) >= 4:
            requested = int(args[3])
        else:
            requested = 1
        effective = min(requested, self.max_epochs) if self.max_epochs else requested
        if "epochs" in kwargs or len(args) < 4:
            kwargs["epochs"] = effective
        else:
            args[3] = effective
        return tuple(args), kwargs, requested, effective

    def _send_fit(self, model: Any, site: list, args: tuple, kwargs: dict, requested: int, effective: int, continues: bool = False) -> None:
        x = kwargs.get("x", args[0] if args else None)
        y = kwargs.get("y", args[1] if len(args) > 1 else None)
        batch_size = kwargs.get("batch_size", args[2] if len(args) > 2 else None)
        xs, ys = describe_array(x), describe_array(y, labels=True)
        n = xs.get("n") if xs else None
        bs = batch_size if batch_size is not None else (32 if n is not None else None)
        vsplit = kwargs.get("validation_split", 0.0) or 0.0
        steps = math.ceil(n * (1 - vsplit) / bs) if n and bs else kwargs.get("steps_per_epoch")
        # Short epochs: sample every step so that each epoch still has several samples.
        if (steps or 0) < 32:
            self.sample_every = 1
        self.channel.send(
            "fit",
            site=site,
            x=xs,
            y=ys,
            batch_size=bs,
            batch_size_given=batch_size is not None,
            epochs_requested=requested,
            epochs=effective,
            steps_per_epoch=steps,
            validation=bool(kwargs.get("validation_data") is not None or vsplit),
            x_kind=type(x).__name__,
            model_id=id(model),
            continues=continues,
            weight_ids=_weight_ids(model),
        )

    def _wrap_make_train_function(self, original: Any) -> Any:
        probe = self

        def make_train_function(model: Any, force: bool = False) -> Any:
            if model.train_function is not None and not force:
                return model.train_function
            if model is not probe.active_model:
                return original(model, force)
            step = model.train_step
            model.train_step = probe._probed_step(model, step)
            try:
                result = original(model, force)
            finally:
                del model.train_step
            inner = model.train_function
            model.train_function = probe._unpacking_function(inner)
            return result

        return make_train_function

    # ------------------------------------------------------------ step wrapper
    def _probed_layers(self, model: Any) -> list[Any]:
        layers = []
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.Model) or type(layer).__name__ == "InputLayer":
                continue
            layers.append(layer)
        return layers

    def _probed_step(self, model: Any, step: Callable[[Any], Any]) -> Callable[[Any], Any]:
        probe = self

        def probed_step(data: Any) -> Any:
            graph = tf.compat.v1.get_default_graph()
            layers = probe._probed_layers(model)
            col = _Collector(graph, layers)
            restore = probe._wrap_activations(layers, col)
            probe.collector = col
            try:
                logs = step(data)
            except Exception:
                restore()  # describe the layers as the user built them, not with our wrappers
                probe._announce(model, probe._probed_layers(model))
                raise
            finally:
                probe.collector = None
                restore()
            # Layers may have been built inside this trace: describe them now.
            layers = probe._probed_layers(model)
            iterations = getattr(getattr(model, "optimizer", None), "iterations", None)
            try:
                packed, layout = probe._pack(layers, col, iterations)
            except Exception as exc:  # noqa: BLE001 - the probe must never break the user's training
                probe.channel.send("probe_error", where="statistics", message=f"{type(exc).__name__}: {exc}"[:500])
                probe._announce(model, layers)
                return logs
            layout_id = probe._layout_id(layout)
            packed = tf.concat([tf.constant([float(layout_id)]), packed], axis=0)
            if not probe._announce(model, layers, layout, layout_id):
                probe.channel.send("layout", id=layout_id, layout=[[k, n] for k, n in layout])
            if not isinstance(logs, dict):
                return logs
            out = dict(logs)
            out[_STATS_KEY] = packed
            return out

        return probed_step

    def _announce(self, model: Any, layers: list[Any], layout: list[tuple[str, int]] | None = None, layout_id: int = -1) -> bool:
        """Describe the model once per fit (on the first trace); False if already described."""
        if self.layers:
            return False
        self.layers = layers
        self._send_model(model, layers, layout or [], layout_id)
        return True

    def _layout_id(self, layout: list[tuple[str, int]]) -> int:
        if layout not in self.layouts:
            self.layouts.append(layout)
        return self.layouts.index(layout)

    def _wrap_activations(self, layers: list[Any], col: _Collector) -> Callable[[], None]:
        """Record pre-activations of fused activations (Dense(..., activation=...))."""
        saved: list[tuple[Any, Any]] = []
        for i, layer in enumerate(layers):
            # RNN layers expose `activation` as a read-only property of their cell: leave them alone.
            if isinstance(getattr(type(layer), "activation", None), property):
                continue
            fn = getattr(layer, "activation", None)
            if not callable(fn) or activation_name(fn) in (None, "linear"):
                continue

            def recording(x: Any, *a: Any, _fn: Any = fn, _i: int = i, **k: Any) -> Any:
                if _i not in col.pre and col.owns(x):
                    col.pre[_i] = x
                return _fn(x, *a, **k)

            try:
                object.__setattr__(layer, "activation", recording)
            except (AttributeError, TypeError):
                continue
            saved.append((layer, fn))

        def restore() -> None:
            for layer, fn in saved:
                object.__setattr__(layer, "activation", fn)

        return restore

    def _pack(self, layers: list[Any], col: _Collector, iterations: Any = None) -> tuple[tf.Tensor, list[tuple[str, int]]]:
        """Flatten every statistic of this step into one vector: [sampled flag, always-on part, sampled part].

        The loss is kept for every step; per-layer statistics are computed (inside a
        tf.cond) only on sampled steps, which keeps the probe's cost low on tiny models.
        """
        always: list[tuple[str, int, Callable[[], tf.Tensor]]] = []
        sampled: list[tuple[str, int, Callable[[], tf.Tensor]]] = []
        reg_total: list[Callable[[], tf.Tensor]] = []
        for i, layer in enumerate(layers):
            _layer_parts(i, layer, col, sampled, always, reg_total)
        if col.loss is not None:
            reg_sum = tf.add_n(reg_total) if reg_total else tf.constant(0.0)
            always.append(("loss", len(S.LOSS_FIELDS), lambda l=col.loss, r=reg_sum: S.scalar_stats([l, r])))
        if col.y is not None:
            sampled.append(("y", len(S.Y_FIELDS), lambda t=col.y: S.target_stats(t)))
        if col.y_pred is not None:
            sampled.append(("y_pred", len(S.YPRED_FIELDS), lambda t=col.y_pred: S.prediction_stats(t)))
            if col.y is not None:
                try:
                    hit = S.hit_rate(col.y, col.y_pred)
                    always.append(("hit", len(S.HIT_FIELDS), lambda h=hit: h))
                except Exception:  # noqa: BLE001 - an unusual target/prediction pairing: no hit rate
                    pass

        def concat(parts: list[tuple[str, int, Callable[[], tf.Tensor]]]) -> tf.Tensor:
            return tf.concat([fn() for _, _, fn in parts], axis=0) if parts else tf.zeros([0])

        n_sampled = sum(n for _, n, _ in sampled)
        if iterations is None or self.sample_every <= 1:
            flag = tf.constant([1.0])
            sampled_vec = concat(sampled)
        else:
            it = tf.cast(iterations, tf.int64)
            take = tf.logical_or(it < self.sample_first, tf.equal(it % self.sample_every, 0))
            flag = tf.reshape(tf.cast(take, tf.float32), [1])
            sampled_vec = tf.cond(take, lambda: concat(sampled), lambda: tf.zeros([n_sampled]))
        layout = [(k, n) for k, n, _ in always] + [("#sampled", 0)] + [(k, n) for k, n, _ in sampled]
        return tf.concat([flag, concat(always), sampled_vec], axis=0), layout

    def _send_model(self, model: Any, layers: list[Any], layout: list[tuple[str, int]], layout_id: int) -> None:
        described = self._describe_layers(model, layers)
        self.channel.send(
            "model",
            model_class=type(model).__name__,
            model_call_code=_code_location(type(model).call),
            layers=described,
            layout=[[k, n] for k, n in layout],
            layout_id=layout_id,
            fields={
                "out": S.ACT_FIELDS, "pre": S.ACT_FIELDS, "grad": S.GRAD_FIELDS, "w": S.WEIGHT_FIELDS,
                "upd": S.UPDATE_FIELDS, "reg": S.REG_FIELDS, "loss": S.LOSS_FIELDS, "y": S.Y_FIELDS, "y_pred": S.YPRED_FIELDS,
                "hit": S.HIT_FIELDS,
            },
            optimizer=self._optimizer_now(model),
        )

    def _describe_layers(self, model: Any, layers: list[Any]) -> list[dict[str, Any]]:
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
                    "is_output": id(layer) in out_ids,
                    "custom": not _from_keras(layer),
                    "call_code": _user_code_of(layer),
                    "init_code": _custom_init_code(layer),
                    "inputs": _inbound(layer, index_of),
                    "inner": index_of.get(id(getattr(layer, "layer", None))) if type(layer).__name__ == "TimeDistributed" else None,
                    "site": self.sites.get(id(layer), []),
                }
            )
        if not out_ids and described:
            described[-1]["is_output"] = True
        return described

    def _optimizer_now(self, model: Any) -> dict[str, Any] | None:
        # Called while the step is traced: read the learning rate eagerly.
        with tf.init_scope():
            return describe_optimizer(model.optimizer, self.optimizer_sites.get(id(model.optimizer)))

    def _unpacking_function(self, inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
        probe = self

        def train_function(iterator: Any) -> Any:
            logs = inner(iterator)
            if isinstance(logs, dict) and _STATS_KEY in logs:
                logs = dict(logs)
                packed = logs.pop(_STATS_KEY)
                if probe.global_step % probe.fetch_every == 0:
                    try:
                        values = np.asarray(packed, dtype=np.float64)
                    except Exception:  # noqa: BLE001 - distributed values
                        values = None
                    if values is not None:
                        probe.channel.send("step", epoch=probe.epoch, step=probe.step, g=probe.global_step, v=values.tolist())
                # One call runs steps_per_execution steps; statistics are those of the last.
                spe = max(1, int(getattr(probe.active_model, "steps_per_execution", 1) or 1))
                probe.step += spe
                probe.global_step += spe
            return logs

        return train_function


class _EpochReporter(keras.callbacks.Callback):
    """Epoch boundaries and epoch-level logs (validation metrics included)."""

    def __init__(self, probe: Probe) -> None:
        super().__init__()
        self.probe = probe

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.probe.epoch = epoch
        self.probe.step = 0
        self.probe.channel.send("epoch_begin", epoch=epoch)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        clean = {}
        for k, v in (logs or {}).items():
            try:
                clean[k] = float(v)
            except (TypeError, ValueError):
                continue
        self.probe.channel.send("epoch", epoch=epoch, logs=clean, seconds=time.monotonic() - self.probe.started)
        self.probe.channel.flush()


def _weight_ids(model: Any) -> list[int]:
    """Identities of the model's weights: a later fit of another model that shares them
    (a pretrained base reused in a new model) continues this fit's training."""
    try:
        return [id(v) for v in model.weights] if getattr(model, "built", False) else []
    except Exception:  # noqa: BLE001
        return []


def _initial_kernels(layers: list[Any]) -> dict[str, list[float]]:
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


# Operations that can turn finite inputs into NaN/Inf, as they appear in bytecode.
_RISKY_NAMES = {"log", "sqrt", "rsqrt", "reciprocal", "pow", "power", "exp", "divide", "truediv", "div", "div_no_nan"}
_RISKY_BINOPS = {"/", "**", "//", "/=", "**="}


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


def _code_location(fn: Any) -> dict[str, Any] | None:
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
    return {"file": os.path.abspath(code.co_filename), "line": code.co_firstlineno, "function": code.co_name, "risky": risky}


def _custom_init_code(layer: Any) -> dict[str, Any] | None:
    """Where a custom layer sets its defaults (`__init__`) and creates its weights (`build`)."""
    if _from_keras(layer):
        return None
    init = _code_location(type(layer).__init__)
    build = _code_location(getattr(type(layer), "build", None))
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
        code = _code_location(type(loss).call) or (_code_location(wrapped) if wrapped is not None else None)
        return {"kind": "object", "name": type(loss).__name__, "config": config, "code": code}
    if callable(loss):
        return {"kind": "function", "name": getattr(loss, "__name__", "loss"), "code": _code_location(loss)}
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
        uniq = np.unique(af[: min(len(af), 100000)])
        info["n_unique"] = int(min(len(uniq), 100000))
        if len(uniq) <= 1000:
            info["unique_values"] = uniq[:50].tolist()
    return info
