"""In-graph summary statistics of tensors flowing through a training step.

Everything is reduced to a few float32 scalars inside the step's graph so the
probe never copies activations or weights out of TensorFlow.
"""

from __future__ import annotations

import tensorflow as tf

from ..vocab import STAT_FIELDS

# Field names of each statistics vector (named once, in vocab.py), shared with the parent
# through the layout event so the two sides never hard-code offsets independently.
ACT_FIELDS = STAT_FIELDS["out"]
GRAD_FIELDS = STAT_FIELDS["grad"]
WEIGHT_FIELDS = STAT_FIELDS["w"]
UPDATE_FIELDS = STAT_FIELDS["upd"]
REG_FIELDS = STAT_FIELDS["reg"]
LOSS_FIELDS = STAT_FIELDS["loss"]
Y_FIELDS = STAT_FIELDS["y"]
YPRED_FIELDS = STAT_FIELDS["y_pred"]
HIT_FIELDS = STAT_FIELDS["hit"]


_ANY = tf.TensorSpec(shape=None, dtype=tf.float32)
_VEC = tf.TensorSpec(shape=[None], dtype=tf.float32)
_BIG = 3.0e38


def _finite_parts(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    finite = tf.math.is_finite(x)
    return x, finite, tf.where(finite, x, tf.zeros_like(x))


def _safe_div(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    return a / tf.maximum(b, 1.0)


# Each statistic is a tf.function over a shape-agnostic signature: its graph is
# built once and every layer (and every retrace of the train step) calls it,
# instead of re-creating dozens of ops per layer per trace.
@tf.function(input_signature=[_ANY], autograph=False)
def _activation_stats(x: tf.Tensor) -> tf.Tensor:
    x, finite, xf = _finite_parts(x)
    size = tf.cast(tf.size(x), tf.float32)
    n = tf.reduce_sum(tf.cast(finite, tf.float32))
    mean = _safe_div(tf.reduce_sum(xf), n)
    var = _safe_div(tf.reduce_sum(tf.square(xf)), n) - tf.square(mean)
    ax = tf.abs(xf)
    units = tf.reshape(xf, [-1, tf.shape(xf)[-1]])
    return tf.stack([
        mean,
        tf.sqrt(tf.maximum(var, 0.0)),
        tf.reduce_min(tf.where(finite, x, _BIG)),
        tf.reduce_max(tf.where(finite, x, -_BIG)),
        _safe_div(tf.reduce_sum(ax), n),
        _safe_div(size - n, size),
        _safe_div(tf.reduce_sum(tf.cast(xf <= 0.0, tf.float32)), size),
        tf.reduce_mean(tf.cast(tf.reduce_max(units, axis=0) <= 0.0, tf.float32)),
        _safe_div(tf.reduce_sum(tf.cast(ax > 5.0, tf.float32)), size),
    ])


def activation_stats(x: tf.Tensor) -> tf.Tensor:
    x = tf.cast(x, tf.float32)
    if x.shape.rank == 0:
        x = tf.reshape(x, [1])
    return _activation_stats(x)


def _flat_concat(tensors: list) -> tf.Tensor:
    parts = [tf.reshape(tf.cast(tf.convert_to_tensor(t), tf.float32), [-1]) for t in tensors]
    return tf.concat(parts, axis=0) if parts else tf.zeros([0])


@tf.function(input_signature=[_VEC], autograph=False)
def _gradient_stats(g: tf.Tensor) -> tf.Tensor:
    g, finite, gf = _finite_parts(g)
    size = tf.cast(tf.size(g), tf.float32)
    n = tf.reduce_sum(tf.cast(finite, tf.float32))
    ag = tf.abs(gf)
    return tf.stack([
        tf.sqrt(tf.reduce_sum(tf.square(gf))),
        _safe_div(tf.reduce_sum(ag), n),
        tf.reduce_max(tf.concat([ag, [0.0]], 0)),
        _safe_div(size - n, size),
        _safe_div(tf.reduce_sum(tf.cast(tf.equal(g, 0.0), tf.float32)), size),
    ])


def gradient_stats(grads: list) -> tf.Tensor:
    return _gradient_stats(_flat_concat(grads))


@tf.function(input_signature=[_VEC, _VEC, tf.TensorSpec([], tf.float32)], autograph=False)
def _weight_stats(w: tf.Tensor, k: tf.Tensor, fan_in: tf.Tensor) -> tf.Tensor:
    w, finite, wf = _finite_parts(w)
    size = tf.cast(tf.size(w), tf.float32)
    n = tf.reduce_sum(tf.cast(finite, tf.float32))
    mean = _safe_div(tf.reduce_sum(wf), n)
    std = tf.sqrt(tf.maximum(_safe_div(tf.reduce_sum(tf.square(wf)), n) - tf.square(mean), 0.0))
    kf = tf.where(tf.math.is_finite(k), k, tf.zeros_like(k))
    kmean = tf.reduce_mean(kf)
    kstd = tf.sqrt(tf.maximum(tf.reduce_mean(tf.square(kf)) - tf.square(kmean), 0.0))
    return tf.stack([
        tf.sqrt(tf.reduce_sum(tf.square(wf))), std, _safe_div(tf.reduce_sum(tf.abs(wf)), n), _safe_div(size - n, size), kstd, fan_in,
    ])


def weight_stats(weights: list, kernel) -> tf.Tensor:
    flat = _flat_concat(weights)
    if kernel is not None:
        shape = kernel.shape
        fan_in = float(shape[:-1].num_elements() or 1) if shape.rank and shape.rank >= 2 else 1.0
        k = tf.reshape(tf.cast(kernel, tf.float32), [-1])
    else:
        fan_in, k = 1.0, flat
    return _weight_stats(flat, k, tf.constant(fan_in))


def update_norm(before: list, after: list) -> tf.Tensor:
    d = _flat_concat([tf.cast(a, tf.float32) - tf.cast(b, tf.float32) for a, b in zip(after, before)])
    d = tf.where(tf.math.is_finite(d), d, tf.zeros_like(d))
    return tf.reshape(tf.norm(d), [1])


def scalar_stats(values: list) -> tf.Tensor:
    return tf.stack([tf.cast(tf.reshape(v, []), tf.float32) for v in values])


@tf.function(input_signature=[_ANY], autograph=False)
def _target_stats(y: tf.Tensor) -> tf.Tensor:
    y, finite, yf = _finite_parts(y)
    size = tf.cast(tf.size(y), tf.float32)
    return tf.stack([
        tf.reduce_min(tf.where(finite, y, _BIG)),
        tf.reduce_max(tf.where(finite, y, -_BIG)),
        tf.reduce_mean(yf),
        _safe_div(size - tf.reduce_sum(tf.cast(finite, tf.float32)), size),
    ])


def target_stats(y: tf.Tensor) -> tf.Tensor:
    return _target_stats(tf.cast(y, tf.float32))


@tf.function(input_signature=[_ANY], autograph=False)
def _prediction_stats(p: tf.Tensor) -> tf.Tensor:
    p, finite, pf = _finite_parts(p)
    size = tf.cast(tf.size(p), tf.float32)
    rows = tf.reduce_sum(tf.reshape(pf, [tf.shape(pf)[0], -1]), axis=-1)
    return tf.stack([
        tf.reduce_min(tf.where(finite, p, _BIG)),
        tf.reduce_max(tf.where(finite, p, -_BIG)),
        tf.reduce_mean(pf),
        tf.math.reduce_std(pf),
        _safe_div(size - tf.reduce_sum(tf.cast(finite, tf.float32)), size),
        tf.reduce_mean(rows),
        tf.math.reduce_std(rows),
    ])


def prediction_stats(p: tf.Tensor) -> tf.Tensor:
    p = tf.cast(p, tf.float32)
    if p.shape.rank == 0:
        p = tf.reshape(p, [1, 1])
    elif p.shape.rank == 1:
        p = tf.reshape(p, [-1, 1])
    return _prediction_stats(p)


def hit_rate(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    """Share of the batch predicted right, whatever the loss and metrics. Several units:
    the argmax against class indices or one-hot rows; rows with several labels (multi-label)
    score the overlap (Jaccard) of the predicted set with the labels. One unit: the 0/1
    prediction (threshold 0.5 on probabilities, 0 on logits) against the label, so labels
    outside {0, 1} never count as hits. NaN where shapes do not pair.

    Counterfactual runs compare it across fixes that change the loss, where Keras'
    "accuracy" changes meaning (binary vs categorical)."""
    p = tf.cast(p, tf.float32)
    y = tf.cast(y, tf.float32)
    nan = tf.constant([float("nan")])
    if p.shape.rank is None or y.shape.rank is None or p.shape.rank == 0:
        return nan
    last = p.shape[-1] if p.shape.rank >= 2 else 1
    if last is None:
        return nan
    threshold = tf.where(tf.logical_and(tf.reduce_min(p) >= 0.0, tf.reduce_max(p) <= 1.0), 0.5, 0.0)
    if last > 1:
        pred = tf.argmax(p, axis=-1)
        if y.shape.rank == p.shape.rank and y.shape[-1] == last:
            labels = y > 0.5
            k = tf.reduce_sum(tf.cast(labels, tf.float32), axis=-1)
            top = tf.cast(tf.equal(pred, tf.argmax(y, axis=-1)), tf.float32)
            chosen = p > threshold
            inter = tf.reduce_sum(tf.cast(tf.logical_and(chosen, labels), tf.float32), axis=-1)
            union = tf.reduce_sum(tf.cast(tf.logical_or(chosen, labels), tf.float32), axis=-1)
            score = tf.where(k > 1.5, _safe_div(inter, tf.maximum(union, 1.0)), top)
            return tf.reshape(tf.reduce_mean(score), [1])
        if y.shape.rank in (p.shape.rank - 1, p.shape.rank) and (y.shape.rank == p.shape.rank - 1 or y.shape[-1] == 1):
            true = tf.cast(tf.reshape(y, tf.shape(pred)), tf.int64)
            return tf.reshape(tf.reduce_mean(tf.cast(tf.equal(pred, true), tf.float32)), [1])
        return nan
    flat_p = tf.reshape(p, [-1])
    flat_y = tf.reshape(y, [-1])
    if flat_p.shape[0] is not None and flat_y.shape[0] is not None and flat_p.shape[0] != flat_y.shape[0]:
        return nan
    said = tf.cast(flat_p > threshold, tf.float32)
    whole = tf.abs(flat_y - tf.round(flat_y)) < 1e-6
    hit = tf.where(whole, tf.equal(said, flat_y), tf.equal(said > 0.5, flat_y > 0.5))
    return tf.reshape(tf.reduce_mean(tf.cast(hit, tf.float32)), [1])


def prebuild() -> None:
    """Trace every statistic once, so a warm worker pays this before the user's job."""
    for rank in (1, 2, 3, 4):
        x = tf.zeros([2] * rank)
        activation_stats(x)
        target_stats(x)
        prediction_stats(x)
    gradient_stats([tf.zeros([2, 2])])
    weight_stats([tf.zeros([2, 2])], tf.zeros([2, 2]))
