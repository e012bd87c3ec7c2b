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


def test_tensors_of_one_shape_computed_together_get_each_its_own_statistics():
    """A deep model's layers of one shape are computed as one tensor: each keeps its own numbers,
    with batch sizes that differ or are unknown until the step runs, large maps read through their sample."""
    rng = np.random.default_rng(3)
    relu, wild, *_ = _tensors()
    maps = _relu_maps(rng)[:6]
    named = {"relu": relu, "relu_half": relu[:7] * 3.0, "wild": wild, "wild_too": -wild, "scalar": tf.constant(2.5),
             "maps": tf.constant(maps), "maps_shifted": tf.constant(maps[:4] - 0.5)}
    expected = {name: S.activation_stats(x).numpy() for name, x in named.items()}
    for name, row in I.activations(named).items():
        np.testing.assert_allclose(row.numpy(), expected[name], rtol=1e-4, atol=1e-5, err_msg=name)
    I.GROUP_VALUES, limit = 100, I.GROUP_VALUES  # a few values per group: the same numbers, one tensor at a time
    try:
        for name, row in I.activations(named).items():
            np.testing.assert_allclose(row.numpy(), expected[name], rtol=1e-4, atol=1e-5, err_msg=name)
    finally:
        I.GROUP_VALUES = limit
    unknown = tf.function(lambda a, b: I.activations({"a": a, "b": b}), input_signature=[tf.TensorSpec([None, 12], tf.float32)] * 2)
    got = unknown(relu, relu[:5] - 1.0)
    np.testing.assert_allclose(got["a"].numpy(), expected["relu"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["b"].numpy(), S.activation_stats(relu[:5] - 1.0).numpy(), rtol=1e-4, atol=1e-5)


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
        kernel = I.choose_kernel(owner, [b.shape for b in before])
        fan_in = S.fan_in(before[kernel].shape) if kernel is not None else 1.0
        expected = np.concatenate([S.gradient_stats(grads).numpy(), S.weight_stats(before, before[kernel] if kernel is not None else None).numpy(),
                                   S.update_norm(before, after).numpy()])
        assert len(expected) == sum(n for _, n in I.TRAINED_FIELDS)
        np.testing.assert_allclose(I.trained(grads, before, after, kernel, fan_in).numpy(), expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(S.trained(grads, before, after, kernel, fan_in).numpy(), expected, rtol=1e-4, atol=1e-6)
    fan_in = I.trained([tf.ones([6, 4])], [tf.zeros([6, 4])], [tf.zeros([6, 4])], 0, S.fan_in(tf.TensorShape([6, 4])))[10].numpy()
    assert fan_in == 6.0  # the kernel's


def _relu_maps(rng) -> np.ndarray:
    """A conv layer's output: 32 images of 30x30 positions, 48 channels, with 5 channels that never
    fire, 3 that fire at one position in a hundred, and one that fires at one corner pixel only."""
    maps = np.maximum(rng.normal(loc=0.2, size=(32, 30, 30, 48)), 0).astype("float32")
    maps[..., :5] = 0.0
    maps[..., 5:8] *= rng.random(size=(32, 30, 30, 3)) < 0.01
    maps[..., 8] = 0.0
    maps[:, 0, 0, 8] = 1.0
    return maps


def test_a_large_activation_is_read_through_a_sample_that_keeps_its_statistics():
    """Beyond THIN_ROW values per row an activation's statistics read a strided sample of its positions:
    about THIN_ROW values per batch row, whatever the batch size (known or not), and statistics close to the whole's
    (the dead share from every value: a channel that fires at one pixel the sample skips is alive), as an
    image map and as a sequence."""
    values = _relu_maps(np.random.default_rng(2))
    maps = tf.constant(values)
    whole = {"mean": values.mean(), "std": values.std(), "mean_abs": np.abs(values).mean(), "nonpos": (values <= 0).mean(),
             "dead_units": (values.reshape(-1, 48).max(axis=0) <= 0).mean()}
    assert whole["dead_units"] == 5 / 48
    sequence = tf.reshape(maps, [32, 900, 48])
    for spec, tensor in ((maps.shape, maps), ([None, 30, 30, 48], maps), ([None, 900, 48], sequence)):
        sample = tf.function(S.thinned, input_signature=[tf.TensorSpec(spec, tf.float32)])(tensor)
        assert sample.shape[0] == 32 and sample.shape[-1] == 48
        assert S.THIN_ROW / 2 <= int(tf.size(sample)) / 32 <= S.THIN_ROW
        assert np.all(sample.numpy()[..., 8] == 0)  # the sample alone would take channel 8 for dead
        for stats_of in (I.activation, S.activation_stats):
            seen = dict(zip(S.ACT_FIELDS, tf.function(stats_of, input_signature=[tf.TensorSpec(spec, tf.float32)])(tensor).numpy()))
            assert seen["dead_units"] == pytest.approx(whole["dead_units"])
            for field in ("mean", "std", "mean_abs", "nonpos"):
                assert seen[field] == pytest.approx(whole[field], rel=0.03), field
    for whole_read in (tf.zeros([32, 4, 4, 8]), tf.zeros([32, 4096])):
        assert S.thinned(whole_read) is whole_read  # small rows, dense outputs: no slicing


def test_a_large_layer_s_weights_are_read_through_a_sample_whose_norms_stand_for_the_whole():
    """A layer beyond THIN_ABOVE weights: its statistics read every stride-th weight, gradient and
    update value, on both paths (one device and tf.distribute); norms are scaled to the whole's."""
    rng = np.random.default_rng(3)
    shapes = [(3, 3, 128, 128), (128,)]
    before = [tf.constant(rng.normal(scale=0.05, size=s).astype("float32")) for s in shapes]
    after = [b + tf.constant(1e-3 * rng.normal(size=b.shape).astype("float32")) for b in before]
    grads = [tf.constant(rng.normal(scale=1e-2, size=s).astype("float32")) for s in shapes]
    thin = S.weight_thinning(shapes)
    assert thin.stride > 1 and S.weight_thinning([(64, 64)]).stride == 1
    whole = np.concatenate([S.gradient_stats(grads).numpy(), S.weight_stats(before, before[0]).numpy(), S.update_norm(before, after).numpy()])
    names = [f"{kind}.{f}" for kind, fields in (("grad", S.GRAD_FIELDS), ("w", S.WEIGHT_FIELDS), ("upd", S.UPDATE_FIELDS)) for f in fields]
    for trained in (I.trained, S.trained):
        seen = trained(thin.of(grads), thin.of(before), thin.of(after), 0, S.fan_in(tf.TensorShape(shapes[0])), thin.scale).numpy()
        for name, got, want in zip(names, seen, whole):
            if name != "grad.max_abs":  # the sample's largest value is not the whole's
                assert got == pytest.approx(want, rel=0.03, abs=1e-7), name
