"""In-graph collection: which tensors of a traced train step are kept (layer outputs,
pre-activations, gradients, weights before and after the update, the loss and targets), and
how their statistics are packed into the one vector the step returns next to its logs."""

from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf

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


_Part = tuple[str, int, Callable[[], tf.Tensor]]


def _layer_parts(i: int, layer: Any, col: "Collector", sampled: list[_Part], always: list[_Part], reg_total: list[tf.Tensor]) -> None:
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


def first_tensor(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return first_tensor(value[0]) if value else None
    if isinstance(value, dict):
        return first_tensor(next(iter(value.values()))) if value else None
    return value


def pack(layers: list[Any], col: Collector, iterations: Any = None, sample_every: int = 1, sample_first: int = 0) -> tuple[tf.Tensor, list[tuple[str, int]]]:
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
    if iterations is None or sample_every <= 1:
        flag = tf.constant([1.0])
        sampled_vec = concat(sampled)
    else:
        it = tf.cast(iterations, tf.int64)
        take = tf.logical_or(it < sample_first, tf.equal(it % sample_every, 0))
        flag = tf.reshape(tf.cast(take, tf.float32), [1])
        sampled_vec = tf.cond(take, lambda: concat(sampled), lambda: tf.zeros([n_sampled]))
    layout = [(k, n) for k, n, _ in always] + [("#sampled", 0)] + [(k, n) for k, n, _ in sampled]
    return tf.concat([flag, concat(always), sampled_vec], axis=0), layout
