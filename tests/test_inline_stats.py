"""The statistics computed as plain operations of the step (probe/inline_stats.py, one device)
are those of the graph functions (probe/stats.py, also used under tf.distribute): same fields,
same numbers, with non-finite values, an unknown width, a scalar and half precision among the
tensors (real TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from deeplocalize.probe import inline_stats as I  # noqa: E402
from deeplocalize.probe import stats as S  # noqa: E402


def _tensors() -> list:
    rng = np.random.default_rng(0)
    relu = np.maximum(rng.normal(size=(16, 12)), 0).astype("float32")
    relu[:, 3] = 0.0  # a dead unit
    wild = rng.normal(scale=8.0, size=(4, 5, 6)).astype("float32")
    wild[0, 0, 0], wild[1, 2, 3] = np.nan, np.inf
    return [tf.constant(relu), tf.constant(wild), tf.constant(rng.normal(size=(7,)).astype("float32")), tf.constant(2.5),
            tf.constant(rng.normal(size=(3, 1)).astype("float16"))]


def test_activation_statistics_match_the_graph_functions():
    for t in _tensors():
        np.testing.assert_allclose(I.activation(t).numpy(), S.activation_stats(t).numpy(), rtol=1e-4, atol=1e-5)


def test_an_unknown_width_is_read_at_run_time():
    wild = _tensors()[1]
    traced = tf.function(I.activation, input_signature=[tf.TensorSpec([None, 5, None], tf.float32)])
    np.testing.assert_allclose(traced(wild).numpy(), S.activation_stats(wild).numpy(), rtol=1e-4, atol=1e-5)


def test_gradient_weight_and_update_statistics_match_the_graph_functions():
    rng = np.random.default_rng(1)
    layer_weights = [[rng.normal(size=(6, 4)).astype("float32"), np.zeros(4, "float32")], [rng.normal(size=(5,)).astype("float32")]]
    layer_weights[0][0][2, 1] = np.nan

    class Dense:
        kernel = object()

    class Custom:
        pass

    for owner, ws in zip((Dense(), Custom()), layer_weights):
        before = [tf.constant(w) for w in ws]
        after = [tf.constant(w + 0.01 * rng.normal(size=w.shape).astype("float32")) for w in ws]
        grads = [tf.constant(rng.normal(size=w.shape).astype("float32")) for w in ws]
        kernel = I.choose_kernel(owner, before)
        expected = np.concatenate([S.gradient_stats(grads).numpy(), S.weight_stats(before, kernel).numpy(), S.update_norm(before, after).numpy()])
        assert len(expected) == sum(n for _, n in I.TRAINED_FIELDS)
        np.testing.assert_allclose(I.trained(grads, before, after, kernel).numpy(), expected, rtol=1e-4, atol=1e-6)
    fan_in = I.trained([tf.ones([6, 4])], [tf.zeros([6, 4])], [tf.zeros([6, 4])], tf.zeros([6, 4]))[10].numpy()
    assert fan_in == 6.0  # the kernel's
