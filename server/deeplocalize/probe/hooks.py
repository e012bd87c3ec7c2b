"""Patches on Keras 3 internals that turn every `fit` into a probed run.

The patches are class-level and only *collect* while a train step is being
traced, so the real batch flows through the real forward/backward pass and the
statistics become extra outputs of the compiled step (stripped again before
callbacks and the progress bar see the logs).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

import numpy as np
import tensorflow as tf
import keras
from keras.src.layers.layer import Layer
from keras.src.optimizers.base_optimizer import BaseOptimizer
from keras.src.optimizers.loss_scale_optimizer import LossScaleOptimizer
from keras.src.trainers.trainer import Trainer
from keras.src.backend.tensorflow.optimizer import TFOptimizer
from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

from . import stats as S
from .channel import Channel
from .collect import Collector, first_tensor, pack, samples
from .describe import (
    code_location, current_learning_rate, describe_schedules, initial_kernels, weight_ids, activation_name, describe_array, describe_layers, describe_loss, describe_optimizer,
)
from .sampling import Sampling
from .sites import crash_event, user_call_chain

_STATS_KEY = "__deeplocalize_stats__"


ACTIVE: "Probe | None" = None  # the probe installed in this process (one at most: see monitor.install)


class AnalysisDone(BaseException):
    """Raised after the first probed `fit` returns: the rest of the script is not needed."""


class Probe:
    """Owns the patches, the per-run state and the event channel."""

    def __init__(self, channel: Channel, max_epochs: int | None, fetch_every: int = 1, max_fits: int = 1, live: bool = False,
                 monitor_of: Callable[[Any], Any] | None = None) -> None:
        """`live`: the user's real training (`deeplocalize run`): every fit, every epoch, and
        only the sampled steps' statistics are fetched from the device and sent. `monitor_of`
        (the Keras callback, monitor.py): only a fit whose callbacks hold a monitor is probed, its
        events going to the channel the monitor opens for it."""
        self.channel = channel
        self.monitor_of = monitor_of
        self.compiles: dict[int, dict[str, Any]] = {}  # model id -> its last compile event (sent again when a monitored fit starts)
        self.max_epochs = max_epochs
        self.live = live
        self.max_fits = 1 << 62 if live else max(1, max_fits)
        self.sampling = Sampling(live)
        self.trained_models: set[int] = set()
        self.layouts: list[list[tuple[str, int]]] = []
        self.unsampled_widths: list[int] = []  # per layout: what an unsampled step sends (see `_layout_id`)
        self.fetch_every = max(1, fetch_every)
        self.sites: dict[int, list] = {}
        self.optimizer_sites: dict[int, list] = {}
        # MirroredStrategy traces the step once per replica, each in its own thread, switching
        # threads at every cross-replica merge: each replica collects into its own Collector,
        # and the activation recorders stay installed until the last replica's trace is done.
        self._local = threading.local()
        self._recorders_lock = threading.Lock()
        self._recorder_users = 0
        self._recorders_saved: list[tuple[Any, Any]] = []
        self.reset()
        self.started = time.monotonic()
        self._originals: list[tuple[Any, str, Any]] = []

    @property
    def collector(self) -> Collector | None:
        return getattr(self._local, "collector", None)

    @collector.setter
    def collector(self, value: Collector | None) -> None:
        self._local.collector = value

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
        # Which steps get per-layer statistics (sampling.py) is counted in the optimizer's
        # iterations, which go on across fits of a model: `iterations_at_fit`.
        self.iterations_at_fit = 0
        self.nonfinite_sent = False
        self._calls_since_sent = 0

    def _sends_sampled(self, values: np.ndarray) -> bool:
        """Whether a live run sends a step the graph sampled: always, but once values are not
        finite (every step is sampled then), the first such step and then one per interval."""
        self._calls_since_sent += 1
        if np.all(np.isfinite(values)) or not self.nonfinite_sent or self._calls_since_sent >= self.sampling.every:
            self.nonfinite_sent = self.nonfinite_sent or not np.all(np.isfinite(values))
            self._calls_since_sent = 0
            return True
        return False

    def fetches(self, global_step: int) -> bool:
        """Whether this step's statistics are fetched (every `fetch_every`-th step; every step in a
        live run, which sends only the sampled ones: see the train function)."""
        return self.live or global_step % self.fetch_every == 0

    # ----------------------------------------------------------------- patching
    def install(self) -> None:
        global ACTIVE
        ACTIVE = self
        self._patch(Layer, "__init__", self._recording_init(self.sites))
        self._patch(Layer, "__call__", self._wrap_layer_call)
        self._patch(BaseOptimizer, "__init__", self._recording_init(self.optimizer_sites))
        self._patch(BaseOptimizer, "apply", self._wrap_optimizer_apply)
        # Mixed precision: the step's update is the loss-scale optimizer's own `apply` (its inner
        # optimizer's runs inside a conditional, and is left alone).
        self._patch(LossScaleOptimizer, "apply", self._wrap_optimizer_apply)
        self._patch(TFOptimizer, "_all_reduce_sum_gradients", self._wrap_all_reduce_gradients)
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
                    t = first_tensor(out)
                    if col.owns(t) and t.dtype.is_floating:
                        col.outputs[idx] = t
            return out

        return __call__

    def _wrap_optimizer_apply(self, original: Any) -> Any:
        probe = self

        def apply(opt: Any, grads: Any, trainable_variables: Any = None) -> Any:
            col = probe.collector
            variables = trainable_variables if trainable_variables is not None else getattr(opt, "_trainable_variables", None)
            # Only an update made by the step itself: a loss-scale optimizer (mixed precision) calls its
            # inner optimizer inside a conditional, whose tensors the step's statistics cannot use.
            if col is None or not variables or tf.compat.v1.get_default_graph() is not col.graph:
                return original(opt, grads, trainable_variables)
            grads = list(grads)
            variables = list(variables)
            by_layer: dict[int, list[int]] = {}
            owners = col.var_owner()
            for i, v in enumerate(variables):
                owner = owners.get(id(v))
                if owner is not None and grads[i] is not None:
                    by_layer.setdefault(owner, []).append(i)
            scale = getattr(opt, "dynamic_scale", None) if getattr(opt, "inner_optimizer", None) is not None else None
            scale = tf.identity(scale) if scale is not None else None  # the scale this step's gradients carry, read before it changes
            for owner, idxs in by_layer.items():
                col.grads[owner] = [grads[i] for i in idxs]
                col.variables[owner] = [variables[i] for i in idxs]
                if scale is not None:
                    col.grad_scale[owner] = scale
                for k, i in enumerate(idxs):
                    col.grad_slots[id(getattr(variables[i], "_value", variables[i]))] = (owner, k)
            take = col.take_before_update(opt) if by_layer else None
            if take is not None:
                col.read_before(take, {owner: col.variables[owner] for owner in by_layer})
                return original(opt, grads, trainable_variables)
            for owner, idxs in by_layer.items():
                col.weights_before[owner] = [tf.identity(variables[i].value) for i in idxs]
                col.read_late.discard(owner)
            result = original(opt, grads, trainable_variables)
            for owner, idxs in by_layer.items():
                col.weights_after[owner] = [tf.identity(variables[i].value) for i in idxs]
            return result

        return apply

    def _wrap_all_reduce_gradients(self, original: Any) -> Any:
        """Under tf.distribute each replica's gradients are partial (its shard of the batch, the
        loss scaled by 1/replicas): the statistics take Keras' all-reduced sum, the gradient of
        the global batch, at no extra communication. One device: the gradients as given."""
        probe = self

        def _all_reduce_sum_gradients(opt: Any, grads_and_vars: Any) -> Any:
            reduced = original(opt, grads_and_vars)
            col = probe.collector
            context = tf.distribute.get_replica_context()
            if col is None or context is None or context.num_replicas_in_sync <= 1:
                return reduced
            reduced = list(reduced)
            for grad, var in reduced:
                slot = col.grad_slots.get(id(var))
                if slot is not None and grad is not None:
                    col.grads[slot[0]][slot[1]] = grad
            return reduced

        return _all_reduce_sum_gradients

    def _wrap_compute_loss(self, original: Any) -> Any:
        probe = self

        def _compute_loss(model: Any, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None, training: bool = True) -> Any:
            loss = original(model, x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
            col = probe.collector
            if col is not None and training and col.loss is None:
                col.loss = loss
                yt, pt = first_tensor(y), first_tensor(y_pred)
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
        self.compiles[id(model)] = event = dict(
            site=site,
            loss=describe_loss(loss),
            optimizer=describe_optimizer(optimizer, self.optimizer_sites.get(id(optimizer))),
            optimizer_given_as=type(kwargs.get("optimizer", args[0] if args else None)).__name__,
            metrics=[str(getattr(m, "name", m)) for m in (kwargs.get("metrics") or [])] if isinstance(kwargs.get("metrics"), (list, tuple)) else [],
            custom_train_step=type(model).train_step is not TensorFlowTrainer.train_step,
        )
        self.channel.send("compile", **event)

    def _wrap_fit(self, original: Any) -> Any:
        probe = self
        self._original_fit = original

        def fit(model: Any, *args: Any, **kwargs: Any) -> Any:
            site = user_call_chain()
            if probe.in_fit or not site or probe.fit_count >= probe.max_fits:
                return original(model, *args, **kwargs)
            if probe.monitor_of is not None:
                monitor = probe.monitor_of(kwargs.get("callbacks", args[5] if len(args) > 5 else None))
                return original(model, *args, **kwargs) if monitor is None else probe._monitored_fit(monitor, site, model, args, kwargs)
            return probe._probed_fit(model, site, args, kwargs)

        return fit

    def _probed_fit(self, model: Any, site: list, args: tuple, kwargs: dict) -> Any:
        """A fit probed start to end; later fits go on unless the analysis has seen enough."""
        probe, original = self, self._original_fit
        if model.train_function is not None and not getattr(model.train_function, "probed", False):
            model.train_function = None  # fitted before without the probe: trace the probed step now
        probe.begin_fit()
        probe.iterations_at_fit = _iterations(model)
        probe.fit_count += 1
        continues = id(model) in probe.trained_models
        probe.trained_models.add(id(model))
        args, kwargs, requested, effective = probe._cap_epochs(args, kwargs)
        probe._send_fit(model, site, args, kwargs, requested, effective, continues)
        callbacks = list(kwargs.get("callbacks") or [])
        callbacks.append(_EpochReporter(probe))
        kwargs["callbacks"] = callbacks
        probe.active_model = model
        _build_before_tracing(model, kwargs.get("x", args[0] if args else None), kwargs.get("y", args[1] if len(args) > 1 else None))
        if getattr(model, "built", False) and not probe.layers:
            try:
                layers = probe._probed_layers(model)
                probe.channel.send("model_preview", layers=describe_layers(model, layers, probe.sites))
                if not continues:
                    probe.channel.send("initial_weights", kernels=initial_kernels(layers))
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

    def _monitored_fit(self, monitor: Any, site: list, model: Any, args: tuple, kwargs: dict) -> Any:
        """A fit with the Keras callback: its own channel, the model's compile sent again (it
        may predate the monitor), and how the fit ended said even when it raised."""
        self.channel = monitor.open(site)
        compiled = self.compiles.get(id(model))
        if compiled is None and getattr(model, "optimizer", None) is not None:  # compiled before the probe was installed
            self._send_compile(model, [], {"loss": getattr(model, "loss", None), "optimizer": model.optimizer}, ())
        elif compiled is not None:
            self.channel.send("compile", **compiled)
        reason = None
        try:
            return self._probed_fit(model, site, args, kwargs)
        except KeyboardInterrupt:
            reason = "interrupted"
            raise
        except BaseException as exc:
            reason = "crashed"
            self.channel.send("crash", **crash_event(exc))
            raise
        finally:
            self.channel.flush()
            monitor.close(reason if reason != "crashed" else None)
            self.channel = Channel(None)

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
        self.sampling.begin_fit(steps)
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
            weight_ids=weight_ids(model),
            schedules=_schedules(model, kwargs.get("callbacks")),
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
            col = Collector(graph, layers)
            iterations = getattr(getattr(model, "optimizer", None), "iterations", None)
            every = probe.sampling.interval()
            if samples(iterations, every) and not tf.distribute.has_strategy():
                col.sampling = (iterations, every, probe.sampling.first)
            restore = probe._wrap_activations(layers)
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
            try:
                packed, layout = pack(layers, col, iterations, every, probe.sampling.first)
            except Exception as exc:  # noqa: BLE001 - the probe must never break the user's training
                probe.channel.send("probe_error", where="statistics", message=f"{type(exc).__name__}: {exc}"[:500])
                probe._announce(model, layers)
                return logs
            layout_id = probe._layout_id(layout)
            # [1, n]: the leading axis lets Keras' cross-replica reduction of the logs (a mean
            # over axis 0 under MultiWorkerMirroredStrategy) keep the vector whole.
            packed = tf.reshape(tf.concat([tf.constant([float(layout_id)]), packed], axis=0), [1, -1])
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
            # An unsampled step sends its layout id, the sampled flag and the statistics of every
            # step (loss, hit rate, penalties): the entries before "#sampled".
            always = next((i for i, (key, _) in enumerate(layout) if key == "#sampled"), len(layout))
            self.unsampled_widths.append(2 + sum(n for _, n in layout[:always]))
        return self.layouts.index(layout)

    def _wrap_activations(self, layers: list[Any]) -> Callable[[], None]:
        """Record pre-activations of fused activations (Dense(..., activation=...)) into the
        tracing thread's collector. Returns the function that ends this trace's use of them."""
        with self._recorders_lock:
            self._recorder_users += 1
            if self._recorder_users == 1:
                self._recorders_saved = self._install_recorders(layers)

        released = False

        def release() -> None:  # idempotent: a failed trace releases before its `finally` does
            nonlocal released
            with self._recorders_lock:
                if released:
                    return
                released = True
                self._recorder_users -= 1
                if self._recorder_users == 0:
                    for layer, fn in reversed(self._recorders_saved):
                        object.__setattr__(layer, "activation", fn)
                    self._recorders_saved = []

        return release

    def _install_recorders(self, layers: list[Any]) -> list[tuple[Any, Any]]:
        probe = self
        saved: list[tuple[Any, Any]] = []
        for i, layer in enumerate(layers):
            # RNN layers expose `activation` as a read-only property of their cell: leave them alone.
            if isinstance(getattr(type(layer), "activation", None), property):
                continue
            fn = getattr(layer, "activation", None)
            if not callable(fn) or activation_name(fn) in (None, "linear"):
                continue

            def recording(x: Any, *a: Any, _fn: Any = fn, _i: int = i, **k: Any) -> Any:
                col = probe.collector
                if col is not None and _i not in col.pre and col.owns(x):
                    col.pre[_i] = x
                return _fn(x, *a, **k)

            try:
                object.__setattr__(layer, "activation", recording)
            except (AttributeError, TypeError):
                continue
            saved.append((layer, fn))
        return saved

    def _send_model(self, model: Any, layers: list[Any], layout: list[tuple[str, int]], layout_id: int) -> None:
        described = describe_layers(model, layers, self.sites)
        self.channel.send(
            "model",
            model_class=type(model).__name__,
            model_call_code=code_location(type(model).call),
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

    def _optimizer_now(self, model: Any) -> dict[str, Any] | None:
        # Called while the step is traced: read the learning rate eagerly.
        with tf.init_scope():
            return describe_optimizer(model.optimizer, self.optimizer_sites.get(id(model.optimizer)))

    def _unpacking_function(self, inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
        probe = self

        def train_function(iterator: Any) -> Any:
            started = time.perf_counter()
            logs = inner(iterator)
            if isinstance(logs, dict) and _STATS_KEY in logs:
                logs = dict(logs)
                packed = logs.pop(_STATS_KEY)
                sampled = False
                if probe.fetches(probe.global_step):
                    try:
                        values = np.asarray(packed, dtype=np.float64).reshape(-1)
                    except Exception:  # noqa: BLE001 - distributed values
                        values = None
                    # [layout id, sampled flag, ...]: a live run sends only the sampled steps (and the first non-finite one).
                    sampled = values is not None and (not probe.live or (len(values) > 1 and values[1] > 0 and probe._sends_sampled(values)))
                    if sampled:
                        if values[1] <= 0:  # not sampled: the per-layer part is zeros, which the trace drops unread
                            values = values[:probe.unsampled_widths[int(values[0])]]
                        probe.channel.send("step", epoch=probe.epoch, step=probe.step, g=probe.global_step, v=values.tolist())
                probe.sampling.note(sampled, time.perf_counter() - started)
                # One call runs steps_per_execution steps; statistics are those of the last.
                spe = max(1, int(getattr(probe.active_model, "steps_per_execution", 1) or 1))
                probe.step += spe
                probe.global_step += spe
            return logs

        train_function.probed = True  # type: ignore[attr-defined]
        return train_function


class _EpochReporter(keras.callbacks.Callback):
    """Epoch boundaries and epoch-level logs (validation metrics included)."""

    def __init__(self, probe: Probe) -> None:
        super().__init__()
        self.probe = probe

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.probe.epoch = epoch
        self.probe.step = 0
        self.probe.channel.send("epoch_begin", epoch=epoch, lr=current_learning_rate(self.model))

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        clean = {}
        for k, v in (logs or {}).items():
            try:
                clean[k] = float(v)
            except (TypeError, ValueError):
                continue
        self.probe.channel.send("epoch", epoch=epoch, logs=clean, seconds=time.monotonic() - self.probe.started, lr=current_learning_rate(self.model))
        self.probe.channel.flush()
        self.probe.sampling.epoch_end(clean.get("loss"))


def _batch_spec(x: Any, y: Any) -> Any:
    """What one batch looks like (shapes and dtypes, no data), for arrays, tensors and datasets;
    None for inputs that would have to be read to know (generators, PyDatasets)."""
    def spec(v: Any) -> Any:
        shape = getattr(v, "shape", None)
        if shape is None or getattr(v, "dtype", None) is None or len(shape) == 0:
            raise TypeError(type(v).__name__)
        return tf.TensorSpec([None, *list(shape)[1:]], tf.as_dtype(getattr(v.dtype, "name", v.dtype)))

    try:
        if isinstance(x, tf.data.Dataset):
            return x.element_spec
        return (tf.nest.map_structure(spec, x), None if y is None else tf.nest.map_structure(spec, y))
    except (TypeError, ValueError):
        return None


def _build_before_tracing(model: Any, x: Any, y: Any) -> None:
    """Create the optimizer's and the metrics' variables before the train step is traced, as
    Keras itself does under a distribution strategy: a step that creates variables on its first
    trace is traced a second time, and tracing the step (the user's and the probe's statistics)
    is most of the probe's start-up cost. Built from shapes only (no batch is read); on any
    problem Keras builds them in the trace as it would without us."""
    if not getattr(model, "built", False) or getattr(model, "_distribute_strategy", None) is not None or getattr(model, "optimizer", None) is None:
        return
    data = _batch_spec(x, y)
    try:
        if data is not None:
            model._symbolic_build(data_batch=data)
        elif not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    except Exception:  # noqa: BLE001 - Keras builds them while tracing, as without the probe
        pass


def _iterations(model: Any) -> int:
    """The optimizer's step count before a fit (0 for a new optimizer)."""
    try:
        return int(model.optimizer.iterations.numpy())
    except Exception:  # noqa: BLE001 - no optimizer yet, or one without a counter
        return 0


def _schedules(model: Any, callbacks: Any) -> list[dict[str, Any]]:
    try:
        return describe_schedules(getattr(model, "optimizer", None), list(callbacks or []))
    except Exception:  # noqa: BLE001 - a description is optional
        return []
