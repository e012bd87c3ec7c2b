"""The probe's units on their own, without a training process: the model description and
the in-graph packing of statistics (TensorFlow in this process; slow to import)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_the_model_description_names_each_layer_as_the_detectors_need_it():
    import keras

    from deeplocalize.probe.describe import describe_layers

    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.5),
                              keras.layers.Dense(3), keras.layers.Softmax()])
    layers = list(model.layers)
    sites = {id(layers[0]): [{"file": "train.py", "line": 3}]}
    described = describe_layers(model, layers, sites)
    assert [d["class"] for d in described] == ["Dense", "Dropout", "Dense", "Softmax"]
    assert [d["activation"] for d in described] == ["relu", None, "linear", "softmax"]
    assert described[0]["units"] == 8 and described[1]["rate"] == 0.5 and described[0]["n_params"] == 6 * 8 + 8
    assert [d["is_output"] for d in described] == [False, False, False, True]
    assert described[0]["site"] == [{"file": "train.py", "line": 3}] and described[2]["site"] == []
    assert not any(d["custom"] for d in described)


def test_fit_data_is_summarized_without_keeping_it():
    from deeplocalize.probe.describe import describe_array

    x = np.array([[1.0, 200.0], [3.0, np.nan], [5.0, 600.0]])
    info = describe_array(x)
    assert info["shape"] == [3, 2] and info["n"] == 3 and info["nonfinite"] == pytest.approx(1 / 6)
    assert info["n_features"] == 2 and info["feature_absmax_max"] == 600.0
    labels = describe_array(np.array([0, 2, 1, 2]), labels=True)
    assert labels["integer_valued"] and labels["min"] == 0 and labels["max"] == 2
    assert describe_array(None) is None


def test_packing_puts_each_statistic_where_its_layout_says():
    import keras
    import tensorflow as tf

    from deeplocalize.probe import stats as S
    from deeplocalize.probe.collect import Collector, pack

    dense = keras.layers.Dense(2)
    dense.build((None, 3))

    @tf.function
    def step(x):
        col = Collector(tf.compat.v1.get_default_graph(), [dense])
        out = dense(x)
        col.outputs[0] = out
        col.loss = tf.reduce_mean(out)
        return pack([dense], col)

    vec, layout = step(tf.constant([[1.0, -2.0, 3.0], [0.0, 0.0, 0.0]]))
    vec = vec.numpy()
    assert layout[0] == ("loss", len(S.LOSS_FIELDS)) and ("#sampled", 0) in layout and ("L0.out", len(S.ACT_FIELDS)) in layout
    assert vec[0] == 1.0 and len(vec) == 1 + sum(n for _, n in layout)  # the sampled flag, then the parts in layout order
    start = 1 + sum(n for k, n in layout[: layout.index(("L0.out", len(S.ACT_FIELDS)))])
    out_stats = dict(zip(S.ACT_FIELDS, vec[start:start + len(S.ACT_FIELDS)]))
    assert out_stats["nonfinite"] == 0.0 and out_stats["min"] <= out_stats["mean"] <= out_stats["max"]
