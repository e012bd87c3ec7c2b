"""In-graph summary statistics of tensors flowing through a training step.

Everything is reduced to a few float32 scalars inside the step's graph so the
probe never copies activations or weights out of TensorFlow.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

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


# Under tf.distribute each statistic is a tf.function over a shape-agnostic signature: its
# graph is built once and every layer calls it. On one device a statistic's operations are
# written into the step itself (`Sharded.local`, inline_stats.py): a graph function costs its
# trace and, at every call site, an instantiation before the first step (tens of
# milliseconds each), which every training process paid again.
#
# A statistic of the batch (activations, targets, predictions, hit rate, loss) is
# computed in two halves: `*_partial` summarizes the rows this device saw in a few
# floats (counts, sums, two-pass squared deviations, maxima), `*_finish` combines
# the partials of every replica, one row each, into the statistic. On one device
# that is one row; under tf.distribute the rows of all replicas are gathered in
# between, so a mean is the mean of the whole global batch, a maximum the maximum
# over every replica and a spread the spread of the whole batch (Chan's combination,
# no cancellation): never a mean of per-replica means. Gradients (after Keras'
# all-reduce), weights and updates are the same on every replica and keep their
# one-step functions.
_ROWS = tf.TensorSpec(shape=[None, None], dtype=tf.float32)


class Sharded(NamedTuple):
    """How a batch statistic is split: the width of one replica's partial, how to compute it,
    how to finish the statistic from every replica's partial (a [replicas, width] matrix),
    and the statistic on one device (both halves as plain operations of the step)."""

    width: int
    partial: Callable[[], tf.Tensor]
    finish: Callable[[tf.Tensor], tf.Tensor]
    local: Callable[[], tf.Tensor]


def _graph(fn: Callable, *signature: tf.TensorSpec) -> Callable:
    return tf.function(fn, input_signature=list(signature), autograph=False)


def _at_once(partial: Callable[[], tf.Tensor], finish: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[], tf.Tensor]:
    """A statistic on one device: its partial finished as the only replica's."""
    return lambda: finish(tf.reshape(partial(), [1, -1]))


def _both(partial: Callable[[tf.Tensor], tf.Tensor], finish: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[tf.Tensor], tf.Tensor]:
    """The same for a statistic of a tensor."""
    return lambda x: _at_once(lambda: partial(x), finish)()


def _spread(count: tf.Tensor, total: tf.Tensor, deviations: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean and standard deviation of the union of replicas, from each one's count, sum and
    sum of squared deviations from its own mean (columns of [replicas] vectors)."""
    n = tf.reduce_sum(count)
    mean = _safe_div(tf.reduce_sum(total), n)
    own_mean = total / tf.maximum(count, 1.0)
    m2 = tf.reduce_sum(deviations) + tf.reduce_sum(count * tf.square(own_mean - mean))
    return mean, tf.sqrt(tf.maximum(_safe_div(m2, n), 0.0))


def _deviations(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.square(x - tf.reduce_mean(x)))


def _activation_partial(x: tf.Tensor) -> tf.Tensor:
    x, finite, xf = _finite_parts(x)
    ax = tf.abs(xf)
    units = tf.reshape(xf, [-1, tf.shape(xf)[-1]])
    unit_max = tf.reduce_max(units, axis=0)
    return tf.concat([
        tf.stack([
            tf.cast(tf.size(x), tf.float32),
            tf.reduce_sum(tf.cast(finite, tf.float32)),
            tf.reduce_sum(xf),
            tf.reduce_sum(tf.square(xf)),
            tf.reduce_sum(ax),
            tf.reduce_sum(tf.cast(xf <= 0.0, tf.float32)),
            tf.reduce_sum(tf.cast(ax > 5.0, tf.float32)),
            tf.reduce_mean(tf.cast(unit_max <= 0.0, tf.float32)),  # dead share of this replica alone
            tf.reduce_max(tf.where(finite, x, -_BIG)),
            tf.reduce_min(tf.where(finite, x, _BIG)),
        ]),
        unit_max,
    ], axis=0)


def _activation_finish(rows: tf.Tensor, per_unit: bool = True) -> tf.Tensor:
    s = tf.reduce_sum(rows[:, :8], axis=0)
    size, n = s[0], s[1]
    mean = _safe_div(s[2], n)
    var = _safe_div(s[3], n) - tf.square(mean)
    if per_unit:  # units dead over the whole global batch
        dead = tf.reduce_mean(tf.cast(tf.reduce_max(rows[:, 10:], axis=0) <= 0.0, tf.float32))
    else:  # no per-unit maxima (no static width to gather them): the replicas' mean share
        dead = tf.reduce_mean(rows[:, 7])
    return tf.stack([
        mean,
        tf.sqrt(tf.maximum(var, 0.0)),
        tf.reduce_min(rows[:, 9]),
        tf.reduce_max(rows[:, 8]),
        _safe_div(s[4], n),
        _safe_div(size - n, size),
        _safe_div(s[5], size),
        dead,
        _safe_div(s[6], size),
    ])


def _as_float(x: tf.Tensor) -> tf.Tensor:
    x = tf.cast(x, tf.float32)
    return tf.reshape(x, [1]) if x.shape.rank == 0 else x


_activation_part = _graph(_activation_partial, _ANY)
_activation_whole = _graph(lambda rows: _activation_finish(rows, True), _ROWS)
_activation_shares = _graph(lambda rows: _activation_finish(rows, False), _ROWS)


THIN_ABOVE = 1 << 16  # weights of one layer beyond which their statistics read a strided sample
THIN_ROW = 2048  # values of one batch row of an activation beyond which its statistics read a strided sample


def thinned(x: tf.Tensor) -> tf.Tensor:
    """The values an activation's statistics read. A convolution's (or a sequence's) output holds
    tens of thousands of values per batch row, each read a dozen times by the statistics: a sampled
    step of a small CNN cost three plain ones, and the sampled steps a third of its analysis. Beyond
    THIN_ROW values per row the statistics read every batch row and every unit (the last axis) at a
    strided subset of the positions in between (pixels, time steps), about THIN_ROW values per row:
    means, spreads, shares and extremes are estimated from them; whether a unit is dead is read from
    every value (`unit_max`). Dense outputs (rank 2) and rows of unknown size are read whole. The
    stride is fixed when the step is traced (a few operations)."""
    plan = thin_plan(x.shape)
    if plan is None:
        return x
    positions, width, start, stride = plan
    return tf.reshape(x, [-1, positions, width])[:, start::stride, :]


def thin_plan(shape: tf.TensorShape) -> tuple[int, int, int, int] | None:
    """(positions per row, width, first position read, stride) of `thinned`; None: read whole."""
    if shape.rank is None or shape.rank < 3:
        return None
    per_row, width = shape[1:].num_elements(), shape[-1]
    if per_row is None or per_row <= THIN_ROW:
        return None
    positions = per_row // width
    stride = min(-(-per_row // THIN_ROW), positions)
    return positions, width, min(stride // 2, positions - 1), stride


def unit_max(x: tf.Tensor) -> tf.Tensor:
    """Each unit's (last axis') largest value over the whole of a thinned activation: whether a unit
    is dead is an extreme, which a sample of positions misses (a convolution's channel that fires
    at a few pixels of each image looked dead in one); one reduction over every value."""
    return tf.reduce_max(tf.reshape(tf.cast(x, tf.float32), [-1, x.shape[-1]]), axis=0)


def activation_sharded(x: tf.Tensor) -> Sharded:
    read = thinned(x)
    sample = _as_float(read)
    units = sample.shape[-1]
    if read is x:  # read whole
        local = lambda: _both(_activation_partial, _activation_finish)(sample)  # noqa: E731
        if units is None:  # per-unit maxima need a static width to travel between replicas
            return Sharded(10, lambda: _activation_part(sample)[:10], _activation_shares, local)
        return Sharded(10 + units, lambda: tf.reshape(_activation_part(sample), [10 + units]), _activation_whole, local)
    partial = lambda: tf.concat([_activation_part(sample)[:10], unit_max(x)], 0)  # noqa: E731
    return Sharded(10 + units, partial, _activation_whole, lambda: _activation_whole(tf.reshape(partial(), [1, -1])))


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


def gradient_stats(grads: list, scale: float = 1.0) -> tf.Tensor:
    """Of a layer's gradients, or of a sample of them (`Thinning`) whose sum of squares times
    `scale` is the whole's."""
    return _gradient_stats(_flat_concat(grads)) * _norm_first(len(GRAD_FIELDS), scale)


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


def fan_in(shape: tf.TensorShape) -> float:
    """A kernel's inputs per unit (what an initializer scales by): all its axes but the last."""
    return float(shape[:-1].num_elements() or 1) if shape.rank and shape.rank >= 2 else 1.0


def weight_stats(weights: list, kernel, fan_in_of_kernel: float | None = None, scale: float = 1.0) -> tf.Tensor:
    """With the spread and fan-in of `kernel` (of all the weights and fan-in 1 without one);
    `fan_in_of_kernel` when `kernel` is a sample (`Thinning`) that no longer has its shape."""
    flat = _flat_concat(weights)
    if kernel is not None:
        fan = fan_in(kernel.shape) if fan_in_of_kernel is None else fan_in_of_kernel
        k = tf.reshape(tf.cast(kernel, tf.float32), [-1])
    else:
        fan, k = 1.0, flat
    return _weight_stats(flat, k, tf.constant(fan)) * _norm_first(len(WEIGHT_FIELDS), scale)


def update_norm(before: list, after: list, scale: float = 1.0) -> tf.Tensor:
    d = _flat_concat([tf.cast(a, tf.float32) - tf.cast(b, tf.float32) for a, b in zip(after, before)])
    d = tf.where(tf.math.is_finite(d), d, tf.zeros_like(d))
    return tf.reshape(tf.norm(d), [1]) * _norm_first(1, scale)


def trained(grads: list, before: list, after: list, kernel: int | None, fan_in_of_kernel: float, scale: float = 1.0) -> tf.Tensor:
    """A layer's gradient, weight and update statistics, in that order (as inline_stats.trained)."""
    return tf.concat([gradient_stats(grads, scale), weight_stats(before, before[kernel] if kernel is not None else None, fan_in_of_kernel, scale),
                      update_norm(before, after, scale)], 0)


def _norm_first(width: int, scale: float) -> tf.Tensor | float:
    """Multiplies a statistic vector's first field, a norm over a sample, into the whole's."""
    return 1.0 if scale == 1.0 else tf.constant([scale ** 0.5] + [1.0] * (width - 1))


class Thinning(NamedTuple):
    """Which of a layer's weights (and of their gradients and update) its statistics read. A layer
    with more than THIN_ABOVE weights is read at every `stride`-th value of each tensor (a ResNet50's
    23 million weights, read whole a dozen times, made its sampled steps cost twice a plain one):
    means, spreads and shares come from the sample, norms from its sum of squares times `scale`
    (whole size / sampled size). The same positions for the weights before and after the update and
    for the gradients, so an update is the difference of the same values."""

    stride: int = 1
    starts: tuple[int, ...] = ()
    scale: float = 1.0

    def of(self, tensors: list) -> list:
        if self.stride == 1:
            return list(tensors)
        return [tf.reshape(t, [-1])[start::self.stride] for t, start in zip(tensors, self.starts)]


def weight_thinning(shapes: list) -> Thinning:
    """The sample of a layer's weights whose statistics stand for all of them (`Thinning`)."""
    sizes = [tf.TensorShape(s).num_elements() for s in shapes]
    if any(n is None for n in sizes) or sum(sizes) <= THIN_ABOVE:
        return Thinning()
    total = sum(sizes)
    stride = -(-total // THIN_ABOVE)
    starts = tuple(min(stride // 2, max(n - 1, 0)) for n in sizes)
    kept = sum(len(range(start, n, stride)) for start, n in zip(starts, sizes))
    return Thinning(stride, starts, total / max(kept, 1))


def _target_partial(y: tf.Tensor) -> tf.Tensor:
    y, finite, yf = _finite_parts(y)
    return tf.stack([
        tf.cast(tf.size(y), tf.float32),
        tf.reduce_sum(tf.cast(finite, tf.float32)),
        tf.reduce_sum(yf),
        tf.reduce_min(tf.where(finite, y, _BIG)),
        tf.reduce_max(tf.where(finite, y, -_BIG)),
    ])


def _target_finish(rows: tf.Tensor) -> tf.Tensor:
    s = tf.reduce_sum(rows[:, :3], axis=0)
    size = s[0]
    return tf.stack([tf.reduce_min(rows[:, 3]), tf.reduce_max(rows[:, 4]), _safe_div(s[2], size), _safe_div(size - s[1], size)])


_target_part, _target_whole = _graph(_target_partial, _ANY), _graph(_target_finish, _ROWS)


def target_sharded(y: tf.Tensor) -> Sharded:
    y = tf.cast(y, tf.float32)
    return Sharded(5, lambda: _target_part(y), _target_whole, lambda: _both(_target_partial, _target_finish)(y))


def _prediction_partial(p: tf.Tensor) -> tf.Tensor:
    p, finite, pf = _finite_parts(p)
    rows = tf.reduce_sum(tf.reshape(pf, [tf.shape(pf)[0], -1]), axis=-1)
    return tf.stack([
        tf.cast(tf.size(p), tf.float32),
        tf.reduce_sum(tf.cast(finite, tf.float32)),
        tf.reduce_sum(pf),
        _deviations(pf),
        tf.cast(tf.size(rows), tf.float32),
        tf.reduce_sum(rows),
        _deviations(rows),
        tf.reduce_min(tf.where(finite, p, _BIG)),
        tf.reduce_max(tf.where(finite, p, -_BIG)),
    ])


def _prediction_finish(rows: tf.Tensor) -> tf.Tensor:
    size = tf.reduce_sum(rows[:, 0])
    mean, std = _spread(rows[:, 0], rows[:, 2], rows[:, 3])
    row_mean, row_std = _spread(rows[:, 4], rows[:, 5], rows[:, 6])
    nonfinite = _safe_div(size - tf.reduce_sum(rows[:, 1]), size)
    return tf.stack([tf.reduce_min(rows[:, 7]), tf.reduce_max(rows[:, 8]), mean, std, nonfinite, row_mean, row_std])


_prediction_part, _prediction_whole = _graph(_prediction_partial, _ANY), _graph(_prediction_finish, _ROWS)


def prediction_sharded(p: tf.Tensor) -> Sharded:
    p = tf.cast(p, tf.float32)
    if p.shape.rank == 0:
        p = tf.reshape(p, [1, 1])
    elif p.shape.rank == 1:
        p = tf.reshape(p, [-1, 1])
    return Sharded(9, lambda: _prediction_part(p), _prediction_whole, lambda: _both(_prediction_partial, _prediction_finish)(p))


def _hit_finish(rows: tf.Tensor) -> tf.Tensor:
    # Probabilities (every prediction of every replica in [0, 1]) are cut at 0.5, logits at 0.
    s = tf.reduce_sum(rows[:, :3], axis=0)
    hits = tf.where(tf.reduce_max(rows[:, 3]) > 0.0, s[1], s[0])
    return tf.reshape(_safe_div(hits, s[2]), [1])


def hit_sharded(y: tf.Tensor, p: tf.Tensor) -> Sharded:
    """The hit rate (see `hit_rate`) as hits at either threshold and rows, which add up across
    replicas, and whether any prediction lies outside [0, 1], which decides the threshold."""
    scores = _hit_scores(y, p)
    if scores is None:
        nan = lambda: tf.constant([float("nan"), float("nan"), 1.0, 0.0])  # noqa: E731
        return Sharded(4, nan, _hit_finish, _at_once(nan, _hit_finish))
    at_half, at_zero = scores

    def partial() -> tf.Tensor:
        pf = tf.cast(p, tf.float32)
        outside = tf.logical_not(tf.logical_and(tf.reduce_min(pf) >= 0.0, tf.reduce_max(pf) <= 1.0))
        hits = tf.reduce_sum(at_half)
        return tf.stack([hits, hits if at_zero is at_half else tf.reduce_sum(at_zero), tf.cast(tf.size(at_half), tf.float32),
                         tf.cast(outside, tf.float32)])

    return Sharded(4, partial, _hit_finish, _at_once(partial, _hit_finish))


def loss_sharded(loss: tf.Tensor, regularization: tf.Tensor, rows: tf.Tensor | None = None, replicas: int = 1) -> Sharded:
    """The loss of the global batch and the weights' regularization penalty (the same on
    every replica). Under tf.distribute Keras scales each replica's loss by 1/replicas; weighted
    by the replica's rows it adds up to the mean over the whole batch, also when the last batch
    splits unevenly. On one device it is the loss as computed."""
    reg = tf.reshape(tf.cast(regularization, tf.float32), [1])
    value = tf.reshape(tf.cast(loss, tf.float32), [])
    if replicas <= 1 or rows is None:
        partial = lambda: tf.stack([value * float(max(replicas, 1)), 1.0])  # noqa: E731
    else:
        n = tf.cast(rows, tf.float32)
        partial = lambda: tf.stack([value * float(replicas) * n, n])  # noqa: E731

    def finish(parts: tf.Tensor) -> tf.Tensor:
        s = tf.reduce_sum(parts, axis=0)
        return tf.concat([tf.reshape(_safe_div(s[0], s[1]), [1]), reg], axis=0)

    return Sharded(2, partial, finish, _at_once(partial, finish))


def finished(sharded: Sharded) -> tf.Tensor:
    """The statistic on one device."""
    return sharded.local()


def activation_stats(x: tf.Tensor) -> tf.Tensor:
    return finished(activation_sharded(x))


def target_stats(y: tf.Tensor) -> tf.Tensor:
    return finished(target_sharded(y))


def prediction_stats(p: tf.Tensor) -> tf.Tensor:
    return finished(prediction_sharded(p))


def hit_rate(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    """Share of the batch predicted right, whatever the loss and metrics (see `_hit_scores`); NaN
    where shapes do not pair. Counterfactual runs compare it across fixes that change the loss,
    where Keras' "accuracy" changes meaning (binary vs categorical)."""
    return finished(hit_sharded(y, p))


def _hit_scores(y: tf.Tensor, p: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor] | None:
    """Per row, whether it was predicted right, read as probabilities (threshold 0.5) and as
    logits (threshold 0); the same tensor twice where no threshold is involved. None where
    shapes do not pair. Several units: the argmax against class indices or one-hot rows; rows
    with several labels (multi-label) score the overlap (Jaccard) of the predicted set (above
    the threshold) with the labels. One unit: the 0/1 prediction against the label, so labels
    outside {0, 1} never count as hits."""
    p = tf.cast(p, tf.float32)
    y = tf.cast(y, tf.float32)
    if p.shape.rank is None or y.shape.rank is None or p.shape.rank == 0:
        return None
    last = p.shape[-1] if p.shape.rank >= 2 else 1
    if last is None:
        return None
    if last > 1:
        pred = tf.argmax(p, axis=-1)
        if y.shape.rank == p.shape.rank and y.shape[-1] == last:
            labels = y > 0.5
            k = tf.reduce_sum(tf.cast(labels, tf.float32), axis=-1)
            top = tf.cast(tf.equal(pred, tf.argmax(y, axis=-1)), tf.float32)

            def jaccard(threshold: float) -> tf.Tensor:
                chosen = p > threshold
                inter = tf.reduce_sum(tf.cast(tf.logical_and(chosen, labels), tf.float32), axis=-1)
                union = tf.reduce_sum(tf.cast(tf.logical_or(chosen, labels), tf.float32), axis=-1)
                return tf.where(k > 1.5, _safe_div(inter, tf.maximum(union, 1.0)), top)

            return jaccard(0.5), jaccard(0.0)
        if y.shape.rank in (p.shape.rank - 1, p.shape.rank) and (y.shape.rank == p.shape.rank - 1 or y.shape[-1] == 1):
            true = tf.cast(tf.reshape(y, tf.shape(pred)), tf.int64)
            hit = tf.cast(tf.equal(pred, true), tf.float32)
            return hit, hit
        return None
    flat_p = tf.reshape(p, [-1])
    flat_y = tf.reshape(y, [-1])
    if flat_p.shape[0] is not None and flat_y.shape[0] is not None and flat_p.shape[0] != flat_y.shape[0]:
        return None
    whole = tf.abs(flat_y - tf.round(flat_y)) < 1e-6

    def binary(threshold: float) -> tf.Tensor:
        said = tf.cast(flat_p > threshold, tf.float32)
        return tf.cast(tf.where(whole, tf.equal(said, flat_y), tf.equal(said > 0.5, flat_y > 0.5)), tf.float32)

    return binary(0.5), binary(0.0)
