"""Every layer's statistics of one step as plain operations of the step's graph (one device).

The per-layer functions of stats.py are graph functions, one call per layer and kind of tensor:
TensorFlow instantiates and optimizes each call site before the first step runs (measured: about
37 ms per call site, 8-10 s of a 6-block Transformer encoder's first step, the largest part of a
live run's overhead). Here each tensor's per-element features are stacked and reduced by one
operation, with no function call: the graph grows by a dozen plain operations per tensor, which
TensorFlow traces and instantiates several times faster (and computes as fast). Activations of
one shape are computed together (`activations`): each row is reduced by the multi-threaded
reductions and only the per-row partials are summed per tensor (segment reductions over every
value run on one CPU thread: ten times slower per sampled step). The numbers are those of
stats.py (same fields, same definitions); under tf.distribute the sharded functions are used instead.
"""

from __future__ import annotations

import weakref
from typing import Any

import tensorflow as tf

from . import stats as S

_BIG = 3.0e38


def _c(value: Any, dtype: Any = tf.float32) -> tf.Tensor:
    """A constant of the graph being traced, made once per graph: a fresh constant per use would
    be a third of the statistics' operations (each one costs tracing time)."""
    graph = tf.compat.v1.get_default_graph()
    made = _CONSTANTS.setdefault(graph, {})
    key = (value if not isinstance(value, list) else tuple(value), dtype)
    if key not in made:
        made[key] = tf.constant(value, dtype)
    return made[key]


_CONSTANTS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _flat(tensors: list[Any]) -> tf.Tensor:
    parts = [tf.reshape(tf.cast(tf.convert_to_tensor(t), tf.float32), _c([-1], tf.int32)) for t in tensors]
    return tf.concat(parts, 0) if len(parts) > 1 else parts[0]


def activation(x: tf.Tensor) -> tf.Tensor:
    """stats.activation_stats of `x`. A unit is a position of the last axis; it is dead when its
    largest value over the batch is <= 0. A large activation is read through `stats.thinned`, but
    for its units' maxima."""
    whole, read = x, S.thinned(x)
    sampled = read is not whole
    x = tf.cast(read, tf.float32)
    width = (x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]) if x.shape.rank else 1
    flat = tf.reshape(x, _c([-1], tf.int32))
    xf, features, extremes = _features(flat)
    sums = tf.unstack(tf.reduce_sum(features, _c(1, tf.int32)))
    highest, negated_lowest = tf.unstack(tf.reduce_max(extremes, _c(1, tf.int32)))
    if sampled:
        maxima = S.unit_max(whole)
    else:
        maxima = tf.reduce_max(tf.reshape(xf, _c([-1, width], tf.int32) if isinstance(width, int) else tf.stack([-1, width])), _c(0, tf.int32))
    dead = tf.reduce_mean(tf.cast(maxima <= _c(0.0), tf.float32))
    return _finish(sums, highest, negated_lowest, dead, tf.cast(tf.size(flat), tf.float32), 0)


def _features(flat: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(the values with non-finite ones zeroed, the six per-value features summed by the statistics,
    the two maximized), the features stacked on a new first axis: each a contiguous block."""
    finite = tf.math.is_finite(flat)
    zero = _c(0.0)
    xf = tf.where(finite, flat, zero)
    ax = tf.abs(xf)
    features = tf.stack([tf.cast(finite, tf.float32), xf, tf.square(xf), ax, tf.cast(xf <= zero, tf.float32), tf.cast(ax > _c(5.0), tf.float32)])
    return xf, features, tf.stack([tf.where(finite, flat, _c(-_BIG)), tf.where(finite, -flat, _c(-_BIG))])


def _finish(sums: list[tf.Tensor], highest: tf.Tensor, negated_lowest: tf.Tensor, dead: tf.Tensor, size: tf.Tensor, axis: int) -> tf.Tensor:
    """ACT_FIELDS from the features' sums (count of finite values, sum, sum of squares, sum of |x|,
    non-positive and saturated counts), stacked on `axis` (one tensor: 0; several: 1)."""
    n, total, squares, absolute, nonpositive, saturated = sums
    # Over the finite values: mean, mean square, mean |x|; over all: non-positive, saturated, non-finite shares.
    mean, mean_square, mean_abs, nonpositive, saturated, nonfinite = tf.unstack(
        tf.stack([total, squares, absolute, nonpositive, saturated, size - n]) / tf.maximum(tf.stack([n, n, n, size, size, size]), _c(1.0)))
    std = tf.sqrt(tf.maximum(mean_square - tf.square(mean), _c(0.0)))
    return tf.stack([mean, std, -negated_lowest, highest, mean_abs, nonfinite, nonpositive, dead, saturated], axis)  # ACT_FIELDS


GROUP_VALUES = 1 << 22  # values read at once for tensors computed together: their features are held together (6x)
ASSUMED_BATCH = 256  # for a batch size not known until the step runs


def activations(tensors: dict[str, Any]) -> dict[str, tf.Tensor]:
    """`activation` of each named tensor. Those of one shape (but for the batch) and type are
    computed together, as one tensor: a deep model repeats a few shapes over many layers (a
    ResNet50's 176 outputs have 13), and each statistic's operations cost tracing time per
    tensor (writing them for every layer of a ResNet50 took 6 s of its first step). A group holds
    at most GROUP_VALUES values read, so that a large batch does not hold a model's activations twice."""
    groups: dict[Any, list[str]] = {}
    for name, x in tensors.items():
        shape = x.shape
        same = shape.rank is not None and shape.rank >= 2 and shape[1:].is_fully_defined()
        groups.setdefault((x.dtype, tuple(shape[1:].as_list())) if same else name, []).append(name)
    out: dict[str, tf.Tensor] = {}
    for names in groups.values():
        for chunk in _chunks([tensors[n] for n in names]):
            if len(chunk) == 1:
                out[names[chunk[0]]] = activation(tensors[names[chunk[0]]])
            else:
                out.update(zip((names[i] for i in chunk), tf.unstack(_same_shaped([tensors[names[i]] for i in chunk]))))
    return out


def _chunks(xs: list[tf.Tensor]) -> list[range]:
    """The tensors (of one shape) computed together, as ranges of positions: GROUP_VALUES each at most."""
    count = len(xs)
    if count == 1:
        return [range(1)]
    plan = S.thin_plan(xs[0].shape)
    per_row = xs[0].shape[1:].num_elements() if plan is None else len(range(plan[2], plan[0], plan[3])) * plan[1]
    rows = max(x.shape[0] or ASSUMED_BATCH for x in xs)
    size = max(1, GROUP_VALUES // max(per_row * rows, 1))
    return [range(i, min(i + size, count)) for i in range(0, count, size)]


def _same_shaped(xs: list[tf.Tensor]) -> tf.Tensor:
    """`activation` of tensors of one shape but for their batch sizes, as rows [len(xs), 9]: what
    each reads (its sample, if large) concatenated by rows, each row reduced on its own, the rows'
    partials summed per tensor."""
    k = len(xs)
    batches = [x.shape[0] for x in xs]
    if all(b is not None for b in batches):
        ids = tf.constant([i for i, b in enumerate(batches) for _ in range(b)], tf.int32)
    else:
        ids = tf.repeat(tf.range(k), tf.stack(tf.shape_n(xs))[:, 0])
    plan = S.thin_plan(xs[0].shape)
    width = xs[0].shape[-1]
    if plan is None:
        read = tf.cast(tf.concat(xs, 0), tf.float32)
    else:  # each tensor's sample, and each row's unit maxima over all its positions (a sample misses a unit's extreme)
        positions, _, start, stride = plan
        maps = [tf.reshape(tf.cast(x, tf.float32), _c([-1, positions, width], tf.int32)) for x in xs]
        read = tf.concat([m[:, start::stride, :] for m in maps], 0)
        units = tf.concat([tf.reduce_max(m, _c(1, tf.int32)) for m in maps], 0)
    per_row = read.shape[1:].num_elements()
    flat = tf.reshape(read, _c([-1, per_row], tf.int32))
    xf, features, extremes = _features(flat)
    # Each row reduced on its own, the rows' partials summed per tensor.
    sums = tf.unstack(tf.math.unsorted_segment_sum(tf.transpose(tf.reduce_sum(features, _c(2, tf.int32))), ids, k), axis=1)
    highest, negated_lowest = tf.unstack(tf.math.unsorted_segment_max(tf.transpose(tf.reduce_max(extremes, _c(2, tf.int32))), ids, k), axis=1)
    if plan is None:  # a unit is dead when its largest value over every row is <= 0
        units = tf.reduce_max(tf.reshape(xf, _c([-1, per_row // width, width], tf.int32)), _c(1, tf.int32))
    dead = tf.reduce_mean(tf.cast(tf.math.unsorted_segment_max(units, ids, k) <= _c(0.0), tf.float32), _c(1, tf.int32))
    size = tf.math.unsorted_segment_sum(tf.ones_like(ids, tf.float32), ids, k) * _c(float(per_row))
    return _finish(sums, highest, negated_lowest, dead, size, 1)


def choose_kernel(layer: Any, shapes: list[Any]) -> int | None:
    """Which of a layer's weights (given by their shapes) is the matrix whose spread the
    initialization checks read: the layer's kernel (its first weight), else a custom layer's
    first matrix (add_weight), else None."""
    if getattr(layer, "kernel", None) is not None and shapes:
        return 0
    return next((k for k, s in enumerate(shapes) if len(s) >= 2), None)


def trained(grads: list[Any], before: list[Any], after: list[Any], kernel: int | None, fan_in: float = 1.0, scale: float = 1.0) -> tf.Tensor:
    """stats.gradient_stats, stats.weight_stats (with the spread of `before[kernel]` and its
    `fan_in`; of all the weights and fan-in 1 without one) and stats.update_norm of one layer, in
    that order: its gradients, weights and update have the same elements, so one reduction serves
    them all. The tensors may be a sample (`stats.Thinning`): norms are scaled by `scale`."""
    g, w = _flat(grads), _flat(before)
    d = _flat(after) - w
    zero, one = _c(0.0), _c(1.0)
    gfin, wfin = tf.math.is_finite(g), tf.math.is_finite(w)
    gf, wf = tf.where(gfin, g, zero), tf.where(wfin, w, zero)
    df = tf.where(tf.math.is_finite(d), d, zero)
    ag = tf.abs(gf)
    g2, gabs, gn, gzero, wsum, w2, wabs, wn, d2 = tf.unstack(tf.reduce_sum(tf.stack([
        tf.square(gf), ag, tf.cast(gfin, tf.float32), tf.cast(tf.equal(g, zero), tf.float32),
        wf, tf.square(wf), tf.abs(wf), tf.cast(wfin, tf.float32), tf.square(df)]), _c(1, tf.int32)))
    size = tf.cast(tf.size(g), tf.float32)
    # Means over the finite values (g, w), shares of all elements, and the kernel's own moments.
    if kernel is None:
        fan_in = 1.0
        moments = [wsum, w2]
    else:
        k = _flat([before[kernel]])
        kf = tf.where(tf.math.is_finite(k), k, zero)
        moments = tf.unstack(tf.reduce_sum(tf.stack([kf, tf.square(kf)]), _c(1, tf.int32)))
        size_k = tf.cast(tf.size(k), tf.float32)
    g_abs_mean, w_mean, w_square_mean, w_abs_mean, g_nonfinite, g_zero, w_nonfinite, k_mean, k_square_mean = tf.unstack(
        tf.stack([gabs, wsum, w2, wabs, size - gn, gzero, size - wn, *moments])
        / tf.maximum(tf.stack([gn, wn, wn, wn, size, size, size, *([size, size] if kernel is None else [size_k, size_k])]), one))
    if scale != 1.0:  # sums of squares of a sample, made the whole's
        g2, w2, d2 = tf.unstack(tf.stack([g2, w2, d2]) * _c(scale))
    return tf.stack([
        tf.sqrt(g2), g_abs_mean, tf.reduce_max(ag), g_nonfinite, g_zero,
        tf.sqrt(w2), tf.sqrt(tf.maximum(w_square_mean - tf.square(w_mean), zero)), w_abs_mean, w_nonfinite,
        tf.sqrt(tf.maximum(k_square_mean - tf.square(k_mean), zero)), _c(fan_in),
        tf.sqrt(d2),
    ])


TRAINED_FIELDS = (("grad", len(S.GRAD_FIELDS)), ("w", len(S.WEIGHT_FIELDS)), ("upd", len(S.UPDATE_FIELDS)))  # what `trained` returns
