"""In-graph collection: which tensors of a traced train step are kept (layer outputs,
pre-activations, gradients, weights before and after the update, the loss and targets), and
how their statistics are packed into the one vector the step returns next to its logs."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, NamedTuple

import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2
from tensorflow.python.util import tf_stack

from . import inline_stats as I
from . import stats as S


class Collector:
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
        self.variables: dict[int, list] = {}  # each layer's trained variables, in the order of its gradients
        self.read_late: set[int] = set()  # layers whose weights are read only on sampled steps (`read_before`)
        # (the optimizer's step counter, the sampling interval, the first steps all sampled) when the
        # step decides before the update whether it is sampled; the decision, once made (`take`).
        self.sampling: tuple[Any, Any, int] | None = None
        self.take: tf.Tensor | None = None
        self.grad_slots: dict[int, tuple[int, int]] = {}  # id(variable) -> (layer, position in grads[layer])
        self.grad_scale: dict[int, tf.Tensor] = {}  # layer -> the loss scale its gradients carry (mixed precision)
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

    def take_before_update(self, optimizer: Any) -> tf.Tensor | None:
        """Whether this step is sampled, decided before `optimizer` updates the weights (so
        they are read only when it is), or None where that cannot be decided there: under
        tf.distribute, every step sampled, another optimizer than the model's first, or inside
        a conditional of the optimizer's own (whose tensors the step cannot use)."""
        if self.sampling is None or tf.compat.v1.get_default_graph() is not self.graph:
            return None
        if self.take is None:
            iterations, every, first = self.sampling
            if getattr(optimizer, "iterations", None) is not iterations:
                return None
            # The counter before its increment: the step's number as `pack` counts it after the update.
            self.take = sample_condition(tf.cast(iterations, tf.int64) + 1, every, first, self.loss)
        return self.take

    def read_before(self, take: tf.Tensor, by_layer: dict[int, list]) -> None:
        """The weights of these layers before the update (their `thinning` sample), read only on
        sampled steps. Read on every step and kept through the update, they cost a copy of every
        weight per step (the update writes a buffer still referenced) and an operation per variable:
        a tenth of a small model's step. Unsampled steps get one empty tensor per dtype instead."""
        variables = [v for vs in by_layer.values() for v in vs]
        dtypes = sorted({v.dtype for v in variables}, key=str)

        def empty() -> list[tf.Tensor]:
            made = {d: tf.zeros([0], d) for d in dtypes}
            return [made[v.dtype] for v in variables]

        def read() -> list[tf.Tensor]:
            return [t for owner in by_layer for t in self.thinning(owner).of([tf.identity(v.value) for v in by_layer[owner]])]

        values = list(tf.cond(take, read, empty))
        _keep_as_a_call(values)
        for owner, vs in by_layer.items():
            self.weights_before[owner], values = values[:len(vs)], values[len(vs):]
            self.read_late.add(owner)

    def thinning(self, i: int) -> S.Thinning:
        """Which of layer i's weights its statistics read (all of them unless it is large)."""
        return S.weight_thinning([v.shape for v in self.variables[i]])

    def gradients(self, i: int) -> list:
        """Layer i's gradients as the loss defines them: under a loss-scale optimizer (mixed
        precision) they arrive multiplied by its current scale, which is divided out here,
        where the statistics are computed (only on sampled steps)."""
        scale = self.grad_scale.get(i)
        if scale is None:
            return self.grads[i]
        return [g / tf.cast(scale, g.dtype) for g in self.grads[i]]

    def trained_weights(self, i: int) -> tuple[list, list, list]:
        """Layer i's gradients and its weights before and after the update, as its statistics read
        them (the `thinning` sample of each). For a layer read late (only on sampled steps) this
        must be called where the sampled statistics are computed: the weights after the update are
        read there."""
        thin = self.thinning(i)
        grads = thin.of(self.gradients(i))
        if i not in self.read_late:
            return grads, thin.of(self.weights_before[i]), thin.of(self.weights_after[i])
        return grads, self.weights_before[i], thin.of([tf.identity(v.value) for v in self.variables[i]])


class _Part(NamedTuple):
    """One named statistic of a step: either the same on every replica (`direct`: gradients
    after Keras' all-reduce, weights, updates, penalties) or a statistic of the batch
    (`sharded`), whose partials of every replica are combined first."""

    name: str
    size: int
    direct: Callable[[], tf.Tensor] | None = None
    sharded: S.Sharded | None = None
    entries: tuple[tuple[str, int], ...] = ()  # the layout's entries this part's values fill, if several

    @property
    def layout(self) -> tuple[tuple[str, int], ...]:
        return self.entries or ((self.name, self.size),)

    @property
    def raw_size(self) -> int:
        return self.size if self.sharded is None else self.sharded.width

    def raw(self) -> tf.Tensor:
        return self.direct() if self.sharded is None else self.sharded.partial()

    def local(self) -> tf.Tensor:
        return self.direct() if self.sharded is None else S.finished(self.sharded)


class _Activations:
    """The activations of one step's layers, computed together where they share a shape
    (inline_stats.activations) when the first of them is asked for: inside the conditional
    of the sampled statistics."""

    def __init__(self) -> None:
        self.tensors: dict[str, tf.Tensor] = {}
        self.rows: dict[str, tf.Tensor] | None = None

    def part(self, name: str, x: tf.Tensor) -> _Part:
        self.tensors[name] = x
        return _Part(name, len(S.ACT_FIELDS), lambda: self.row(name))

    def row(self, name: str) -> tf.Tensor:
        if self.rows is None:
            self.rows = I.activations(self.tensors)
        return self.rows[name]


def _layer_parts(i: int, layer: Any, col: "Collector", sampled: list[_Part], always: list[_Part], reg_total: list[tf.Tensor],
                 activations: _Activations | None = None) -> None:
    """One layer's statistics: activations, gradients, weights and update on sampled steps;
    its regularization penalty on every step. On one device (`activations` given) they are plain
    operations of the step (inline_stats.py); under tf.distribute, sharded graph functions (stats.py)."""
    one_device = activations is not None
    for name, found in ((f"L{i}.out", col.outputs), (f"L{i}.pre", col.pre)):
        if i in found:
            sampled.append(activations.part(name, found[i]) if activations is not None
                           else _Part(name, len(S.ACT_FIELDS), sharded=S.activation_sharded(found[i])))
    if i in col.grads:
        # Weights *before* this step's update, so step 0 shows the initialization.
        shapes = [v.shape for v in col.variables[i]]
        kernel = I.choose_kernel(layer, shapes)
        fan_in = S.fan_in(shapes[kernel]) if kernel is not None else 1.0
        scale = col.thinning(i).scale
        entries = tuple((f"L{i}.{kind}", n) for kind, n in I.TRAINED_FIELDS)
        stats_of = I.trained if one_device else S.trained
        sampled.append(_Part(f"L{i}.trained", sum(n for _, n in entries),
                             lambda: stats_of(*col.trained_weights(i), kernel, fan_in, scale), entries=entries))
    try:
        has_reg = any(getattr(layer, name, None) is not None for name in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"))
        reg = list(layer.losses) if has_reg else []
    except Exception:  # noqa: BLE001
        reg = []
    if reg:
        value = tf.add_n([tf.cast(tf.reshape(r, []), tf.float32) for r in reg])
        reg_total.append(value)
        always.append(_Part(f"L{i}.reg", 1, lambda v=value: tf.reshape(v, [1])))


def first_tensor(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return first_tensor(value[0]) if value else None
    if isinstance(value, dict):
        return first_tensor(next(iter(value.values()))) if value else None
    return value


_EXTRACT_STACK = getattr(tf_stack, "extract_stack", None)


@contextmanager
def _one_creation_stack() -> Iterator[None]:
    """While the statistics are written into the step, every new operation records the same Python
    stack (where they are written), taken once. TensorFlow takes the whole stack of each new
    operation, for its error messages: under a hundred frames of Keras and TensorFlow, that was a
    quarter of the statistics' tracing time in a deep model (thousands of operations). Not under
    tf.distribute, whose replicas trace in several threads (the stack function is the module's)."""
    if _EXTRACT_STACK is None or tf_stack.extract_stack is not _EXTRACT_STACK or tf.distribute.has_strategy():
        yield
        return
    stack = _EXTRACT_STACK(stacklevel=3)
    tf_stack.extract_stack = lambda stacklevel=1: stack
    try:
        yield
    finally:
        tf_stack.extract_stack = _EXTRACT_STACK


def pack(layers: list[Any], col: Collector, iterations: Any = None, sample_every: Any = 1, sample_first: int = 0) -> tuple[tf.Tensor, list[tuple[str, int]]]:
    """Flatten every statistic of this step into one vector: [sampled flag, always-on part, sampled part].

    The loss is kept for every step; per-layer statistics are computed (inside a
    tf.cond) only on sampled steps, which keeps the probe's cost low on tiny models.
    Under tf.distribute every replica ends with the same vector (see `_across_replicas`).
    """
    with _one_creation_stack():
        return _pack(layers, col, iterations, sample_every, sample_first)


def _pack(layers: list[Any], col: Collector, iterations: Any, sample_every: Any, sample_first: int) -> tuple[tf.Tensor, list[tuple[str, int]]]:
    always: list[_Part] = []
    sampled: list[_Part] = []
    reg_total: list[tf.Tensor] = []
    context = tf.distribute.get_replica_context()
    replicas = 1 if context is None else context.num_replicas_in_sync
    activations = _Activations() if replicas <= 1 else None
    for i, layer in enumerate(layers):
        _layer_parts(i, layer, col, sampled, always, reg_total, activations)
    if col.loss is not None:
        reg_sum = tf.add_n(reg_total) if reg_total else tf.constant(0.0)
        rows = tf.shape(col.y_pred)[0] if col.y_pred is not None and col.y_pred.shape.rank else None
        always.append(_Part("loss", len(S.LOSS_FIELDS), sharded=S.loss_sharded(col.loss, reg_sum, rows, replicas)))
    if col.y is not None:
        sampled.append(_Part("y", len(S.Y_FIELDS), sharded=S.target_sharded(col.y)))
    if col.y_pred is not None:
        sampled.append(_Part("y_pred", len(S.YPRED_FIELDS), sharded=S.prediction_sharded(col.y_pred)))
        if col.y is not None:
            try:
                always.append(_Part("hit", len(S.HIT_FIELDS), sharded=S.hit_sharded(col.y, col.y_pred)))
            except Exception:  # noqa: BLE001 - an unusual target/prediction pairing: no hit rate
                pass

    if col.take is not None:
        take = col.take  # decided before the update (`Collector.take_before_update`)
    elif not samples(iterations, sample_every):
        take = None
    else:
        take = sample_condition(tf.cast(iterations, tf.int64), sample_every, sample_first, col.loss if replicas <= 1 else None)
    flag = tf.constant([1.0]) if take is None else tf.reshape(tf.cast(take, tf.float32), [1])

    def when_sampled(compute: Callable[[], list[tf.Tensor]], sizes: list[int]) -> tf.Tensor:
        """The sampled statistics as one vector, zeros on the steps that skip them. One output of
        the conditional, not one per statistic: each output (and each statistic's zeros in the
        other branch) costs tracing time, hundreds of them in a deep model."""
        if take is None:
            return tf.concat(compute(), 0)
        out = tf.cond(take, lambda: tf.concat(compute(), 0), lambda: tf.zeros([sum(sizes)]))
        _keep_as_a_call([out])
        return out

    if replicas <= 1:
        values = [p.local() for p in always] + ([when_sampled(lambda: [p.local() for p in sampled], [p.size for p in sampled])] if sampled else [])
    else:
        sizes = [p.raw_size for p in sampled]
        raw = [p.raw() for p in always] + (tf.split(when_sampled(lambda: [p.raw() for p in sampled], sizes), sizes) if sampled else [])
        values = _across_replicas(context, always + sampled, raw)
    layout = [e for p in always for e in p.layout] + [("#sampled", 0)] + [e for p in sampled for e in p.layout]
    return tf.concat([flag] + values, axis=0), layout


def samples(iterations: Any, sample_every: Any) -> bool:
    """Whether the step is sampled (some steps only) rather than measured at every step."""
    return iterations is not None and not (isinstance(sample_every, int) and sample_every <= 1)


def sample_condition(step: tf.Tensor, sample_every: Any, sample_first: int, loss: tf.Tensor | None) -> tf.Tensor:
    """Whether optimizer step number `step` (counted from 1) gets per-layer statistics.
    `sample_every`: a number, or a variable a live run retunes without retracing the step
    (sampling.py). The step where the loss first goes non-finite is always sampled: the one
    after it already has NaN weights."""
    every = tf.maximum(tf.cast(sample_every, tf.int64), 1)
    take = tf.logical_or(step < sample_first, tf.equal(step % every, 0))
    if loss is not None:
        take = tf.logical_or(take, tf.logical_not(tf.reduce_all(tf.math.is_finite(loss))))
    return take


def _keep_as_a_call(outputs: list[tf.Tensor]) -> None:
    """Keep the conditional a call of its branch, not lowered into the step's graph: lowered, every
    operation of the statistics is still visited on each step that does not compute them (the
    executor propagates the untaken branch node by node), which costs a few percent of every step."""
    seen, todo = set(), [t.op for t in outputs]
    while todo:
        op = todo.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type in ("If", "StatelessIf"):
            op._set_attr("_lower_using_switch_merge", attr_value_pb2.AttrValue(b=False))  # noqa: SLF001 - cond_v2's own switch
            return
        if op.type == "Identity":
            todo.extend(t.op for t in op.inputs)


def _across_replicas(context: Any, parts: list[_Part], raw: list[tf.Tensor]) -> list[tf.Tensor]:
    """Finish each statistic from the whole global batch: the sharded parts' partials of
    every replica are gathered (one collective per step, a few floats per layer), so every
    replica finishes the same numbers."""
    shards = [r for p, r in zip(parts, raw) if p.sharded is not None]
    if not shards:
        return raw
    mine = tf.reshape(tf.concat(shards, axis=0), [1, -1])
    everyone = context.all_gather(mine, axis=0)  # [replicas, sum of the widths]
    values, at = [], 0
    for part, r in zip(parts, raw):
        sh = part.sharded
        if sh is None:
            values.append(r)
            continue
        values.append(sh.finish(everyone[:, at: at + sh.width]))
        at += sh.width
    return values
