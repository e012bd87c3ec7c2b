"""In-graph summary statistics of tensors flowing through a training step.

Everything is reduced to a few float32 scalars inside the step's graph so the
probe never copies activations or weights out of TensorFlow.
"""

from __future__ import annotations

import tensorflow as tf

# Field names of each statistics vector, shared with the parent through the
# layout event so the two sides never hard-code offsets independently.
ACT_FIELDS = ("mean", "std", "min", "max", "mean_abs", "nonfinite", "nonpos", "dead_units", "sat5")
GRAD_FIELDS = ("norm", "mean_abs", "max_abs", "nonfinite", "zero")
WEIGHT_FIELDS = ("norm", "std", "mean_abs", "nonfinite", "kernel_std", "fan_in")
UPDATE_FIELDS = ("norm",)
REG_FIELDS = ("value",)
LOSS_FIELDS = ("loss", "reg")
Y_FIELDS = ("min", "max", "mean", "nonfinite")
YPRED_FIELDS = ("min", "max", "mean", "std", "nonfinite", "rowsum_mean", "rowsum_std")


def _finite_parts(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    x = tf.cast(x, tf.float32)
    finite = tf.math.is_finite(x)
    return x, finite, tf.where(finite, x, tf.zeros_like(x))


def _safe_div(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    return a / tf.maximum(b, 1.0)


def activation_stats(x: tf.Tensor) -> tf.Tensor:
    x, finite, xf = _finite_parts(x)
    size = tf.cast(tf.size(x), tf.float32)
    n_finite = tf.reduce_sum(tf.cast(finite, tf.float32))
    mean = _safe_div(tf.reduce_sum(xf), n_finite)
    centered = tf.where(finite, xf - mean, tf.zeros_like(xf))
    std = tf.sqrt(_safe_div(tf.reduce_sum(tf.square(centered)), n_finite))
    big = tf.constant(3.0e38)
    vmin = tf.reduce_min(tf.where(finite, x, big))
    vmax = tf.reduce_max(tf.where(finite, x, -big))
    mean_abs = _safe_div(tf.reduce_sum(tf.abs(xf)), n_finite)
    nonfinite = _safe_div(size - n_finite, size)
    nonpos = _safe_div(tf.reduce_sum(tf.cast(xf <= 0.0, tf.float32)), size)
    if x.shape.rank is not None and x.shape.rank >= 2:
        units = tf.reshape(xf, [-1, tf.shape(xf)[-1]])
    else:
        units = tf.reshape(xf, [-1, 1])
    dead = tf.reduce_mean(tf.cast(tf.reduce_max(units, axis=0) <= 0.0, tf.float32))
    sat5 = _safe_div(tf.reduce_sum(tf.cast(tf.abs(xf) > 5.0, tf.float32)), size)
    return tf.stack([mean, std, vmin, vmax, mean_abs, nonfinite, nonpos, dead, sat5])


def _flat_concat(tensors: list) -> tf.Tensor:
    parts = [tf.reshape(tf.cast(tf.convert_to_tensor(t), tf.float32), [-1]) for t in tensors]
    return tf.concat(parts, axis=0) if parts else tf.zeros([0])


def gradient_stats(grads: list) -> tf.Tensor:
    g, finite, gf = _finite_parts(_flat_concat(grads))
    size = tf.cast(tf.size(g), tf.float32)
    n_finite = tf.reduce_sum(tf.cast(finite, tf.float32))
    norm = tf.sqrt(tf.reduce_sum(tf.square(gf)))
    mean_abs = _safe_div(tf.reduce_sum(tf.abs(gf)), n_finite)
    max_abs = tf.reduce_max(tf.concat([tf.abs(gf), [0.0]], 0))
    nonfinite = _safe_div(size - n_finite, size)
    zero = _safe_div(tf.reduce_sum(tf.cast(tf.equal(g, 0.0), tf.float32)), size)
    return tf.stack([norm, mean_abs, max_abs, nonfinite, zero])


def weight_stats(weights: list, kernel) -> tf.Tensor:
    w, finite, wf = _finite_parts(_flat_concat(weights))
    size = tf.cast(tf.size(w), tf.float32)
    n_finite = tf.reduce_sum(tf.cast(finite, tf.float32))
    norm = tf.sqrt(tf.reduce_sum(tf.square(wf)))
    mean = _safe_div(tf.reduce_sum(wf), n_finite)
    std = tf.sqrt(_safe_div(tf.reduce_sum(tf.square(wf - mean)), n_finite))
    mean_abs = _safe_div(tf.reduce_sum(tf.abs(wf)), n_finite)
    nonfinite = _safe_div(size - n_finite, size)
    if kernel is not None:
        k, kfinite, kf = _finite_parts(kernel)
        kmean = tf.reduce_mean(kf)
        kstd = tf.sqrt(tf.reduce_mean(tf.square(kf - kmean)))
        shape = kernel.shape
        fan_in = float(shape[:-1].num_elements() or 1) if shape.rank and shape.rank >= 2 else 1.0
    else:
        kstd, fan_in = std, 1.0
    return tf.stack([norm, std, mean_abs, nonfinite, kstd, tf.constant(fan_in)])


def update_norm(before: list, after: list) -> tf.Tensor:
    diffs = [tf.cast(a, tf.float32) - tf.cast(b, tf.float32) for a, b in zip(after, before)]
    d, _, df = _finite_parts(_flat_concat(diffs))
    return tf.stack([tf.sqrt(tf.reduce_sum(tf.square(df)))])


def scalar_stats(values: list) -> tf.Tensor:
    return tf.stack([tf.cast(tf.reshape(v, []), tf.float32) for v in values])


def target_stats(y: tf.Tensor) -> tf.Tensor:
    y, finite, yf = _finite_parts(y)
    size = tf.cast(tf.size(y), tf.float32)
    big = tf.constant(3.0e38)
    return tf.stack(
        [
            tf.reduce_min(tf.where(finite, y, big)),
            tf.reduce_max(tf.where(finite, y, -big)),
            tf.reduce_mean(yf),
            _safe_div(size - tf.reduce_sum(tf.cast(finite, tf.float32)), size),
        ]
    )


def prediction_stats(p: tf.Tensor) -> tf.Tensor:
    p, finite, pf = _finite_parts(p)
    size = tf.cast(tf.size(p), tf.float32)
    big = tf.constant(3.0e38)
    if p.shape.rank is not None and p.shape.rank >= 2:
        rows = tf.reduce_sum(pf, axis=-1)
    else:
        rows = pf
    rmean = tf.reduce_mean(rows)
    return tf.stack(
        [
            tf.reduce_min(tf.where(finite, p, big)),
            tf.reduce_max(tf.where(finite, p, -big)),
            tf.reduce_mean(pf),
            tf.math.reduce_std(pf),
            _safe_div(size - tf.reduce_sum(tf.cast(finite, tf.float32)), size),
            rmean,
            tf.math.reduce_std(rows),
        ]
    )
