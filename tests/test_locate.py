"""The source mapper on source text: runtime call sites -> exact tokens -> edits."""

from __future__ import annotations

import pytest

import ast
import textwrap
from pathlib import Path
from typing import get_args

from deeplocalize.edits import apply_fix
from deeplocalize.findings import CallArgs, CodeTarget, Feed, Finding, FitData, FixSpec, FrameTarget, Guard, Layer, LayerArg, LayerCall, NewValue, NonfiniteData, OptimizerArg, Rename, SwapParams, Target
from deeplocalize.anchors import Anchors
from deeplocalize.locate import Locator
from deeplocalize.trace import CodeLocation, CompileInfo, FitInfo, Frame, LayerInfo, OptimizerInfo, Trace


def call_frame(path: Path, source: str, needle: str, occurrence: int = 0) -> Frame:
    """The frame the probe would record for the call whose text starts with `needle`."""
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and ast.get_source_segment(source, n).startswith(needle)]
    calls.sort(key=lambda n: (n.lineno, n.col_offset, -(n.end_col_offset or 0)))
    c = calls[occurrence]
    return Frame(str(path), c.lineno, c.end_lineno, c.col_offset, c.end_col_offset, "<module>")


def write(tmp_path: Path, source: str) -> tuple[Path, str]:
    source = textwrap.dedent(source).lstrip()
    path = tmp_path / "train.py"
    path.write_text(source)
    return path, source


def finding(target: Target, *fixes: FixSpec, root: str = "activation") -> Finding:
    return Finding("x", "error", "s", root, "m", target, fixes=list(fixes))


def test_layer_keyword_token_and_replacement(tmp_path):
    path, src = write(tmp_path, '''
        import keras
        model = keras.Sequential([
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation='relu'),
        ])
    ''')
    layers = [LayerInfo(0, "d0", "Dense", site=[call_frame(path, src, "keras.layers.Dense(64")]),
              LayerInfo(1, "d1", "Dense", site=[call_frame(path, src, "keras.layers.Dense(10")])]
    lf = Locator(Trace(str(path), layers=layers)).locate(
        finding(LayerArg(layer=1, arg="activation"), FixSpec("softmax", NewValue('"softmax"'))))
    assert (lf.range.start.line, lf.range.start.column, lf.range.end.column) == (4, 39, 45)
    fixed = apply_fix(src, lf.fixes[0])
    assert "keras.layers.Dense(10, activation='softmax')" in fixed  # keeps the file's quote style
    assert 'Dense(64, activation="relu")' in fixed


def test_missing_keyword_is_inserted(tmp_path):
    path, src = write(tmp_path, '''
        import keras
        out = keras.layers.Dense(1)
    ''')
    layers = [LayerInfo(0, "d0", "Dense", site=[call_frame(path, src, "keras.layers.Dense")])]
    lf = Locator(Trace(str(path), layers=layers)).locate(
        finding(LayerArg(layer=0, arg="activation"), FixSpec("sigmoid", NewValue('"sigmoid"'))))
    assert lf.range.start.line == 2
    assert apply_fix(src, lf.fixes[0]).splitlines()[1] == 'out = keras.layers.Dense(1, activation="sigmoid")'


def test_value_passed_by_name_points_at_its_definition(tmp_path):
    path, src = write(tmp_path, '''
        import keras
        lr = 5.0
        opt = keras.optimizers.SGD(learning_rate=lr)
    ''')
    opt = OptimizerInfo("SGD", 5.0, {}, [call_frame(path, src, "keras.optimizers.SGD")])
    lf = Locator(Trace(str(path), optimizer=opt)).locate(
        finding(OptimizerArg(arg="learning_rate", position=0), FixSpec("lower", NewValue("0.01")), root="learning_rate"))
    assert (lf.range.start.line, lf.range.start.column) == (2, 6)
    assert apply_fix(src, lf.fixes[0]).splitlines()[1] == "lr = 0.01"


def test_helper_parameter_is_followed_to_the_callers_argument(tmp_path):
    path, src = write(tmp_path, '''
        from keras.layers import Dense

        def block(units, act):
            return Dense(units, activation=act)

        hidden = block(32, "sigmoid")
    ''')
    inner = call_frame(path, src, "Dense(units")
    outer = call_frame(path, src, "block(32")
    layers = [LayerInfo(0, "d0", "Dense", site=[inner, outer])]
    lf = Locator(Trace(str(path), layers=layers)).locate(
        finding(LayerArg(layer=0, arg="activation"), FixSpec("relu", NewValue('"relu"'))))
    assert lf.range.start.line == 6
    assert apply_fix(src, lf.fixes[0]).splitlines()[5] == 'hidden = block(32, "relu")'


def test_optimizer_given_as_string_is_replaced_by_an_object_with_the_rate(tmp_path):
    path, src = write(tmp_path, '''
        import tensorflow as tf
        model.compile(optimizer="sgd", loss="mse")
    ''')
    compile_site = [call_frame(path, src, "model.compile")]
    t = Trace(str(path), optimizer=OptimizerInfo("SGD", 0.01, {}, []), compile=CompileInfo(compile_site, {"kind": "string", "name": "mse"}, None))
    lf = Locator(t).locate(finding(OptimizerArg(arg="learning_rate"), FixSpec("lower", NewValue("0.001")), root="learning_rate"))
    assert apply_fix(src, lf.fixes[0]).splitlines()[1] == 'model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.001), loss="mse")'


def test_a_data_finding_points_at_the_array_fed_to_fit_and_scales_it_where_it_is_fed(tmp_path):
    path, src = write(tmp_path, '''
        from sklearn.datasets import load_wine
        X, y = load_wine(return_X_y=True)
        model.fit(X, y, epochs=3)
    ''')
    fit = FitInfo([call_frame(path, src, "model.fit")], None, None, 32, False, 3, 3, 5, False)
    lf = Locator(Trace(str(path), fit=fit)).locate(
        finding(FitData(arg="x", position=0), FixSpec("scale", Feed("scale_inputs")), root="data_normalization"))
    assert lf.range.start.line == 2
    fixed = apply_fix(src, lf.fixes[0]).splitlines()
    assert fixed[2:4] == ["x_mean, x_std = X.mean(axis=0), X.std(axis=0) + 1e-8", "model.fit((X - x_mean) / x_std, y, epochs=3)"]


def test_labels_fed_through_a_dataset_point_at_the_array_it_was_sliced_from(tmp_path):
    path, src = write(tmp_path, '''
        import tensorflow as tf
        y = data.target + 1
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        train = ds.shuffle(600, seed=0).batch(32)
        model.fit(train, epochs=10)
    ''')
    fit = FitInfo([call_frame(path, src, "model.fit")], None, None, 32, False, 10, 10, 5, False)
    lf = Locator(Trace(str(path), fit=fit)).locate(finding(FitData(arg="y", position=1), root="labels"))
    assert lf.range.start.line == 2


def test_non_finite_inputs_point_at_the_division_that_made_them_and_guard_it(tmp_path):
    """Issue 21, class 1: a zero standard deviation (a constant column) divides in a helper; the NaN
    enters at fit through a split. The place to change is the division, not fit nor the split."""
    path, src = write(tmp_path, '''
        import numpy as np
        def standardize(frame):
            mean = frame.mean(axis=0)
            std = frame.std(axis=0)
            return (frame - mean) / std
        features = np.hstack([data, np.ones((len(data), 1))]) / 255.0
        features = standardize(features)
        x_train, x_test, y_train, y_test = train_test_split(features, labels)
        model.fit(x_train, y_train, epochs=10)
    ''')
    fit = FitInfo([call_frame(path, src, "model.fit")], None, None, 32, False, 10, 10, 5, False)
    lf = Locator(Trace(str(path), fit=fit)).locate(
        finding(NonfiniteData(arg="x", position=0), FixSpec("guard", Guard("operand")), root="data_normalization"))
    assert (lf.range.start.line, lf.range.start.column) == (5, 12)
    assert apply_fix(src, lf.fixes[0]).splitlines()[4] == "    return (frame - mean) / (std + 1e-7)"
    # Scaling by a literal cannot make NaN: without the helper, the statement that assigned the array.
    path.write_text(src.replace("features = standardize(features)", "features = features"))
    lf = Locator(Trace(str(path), fit=fit)).locate(
        finding(NonfiniteData(arg="x", position=0), FixSpec("guard", Guard("operand")), root="data_normalization"))
    assert lf.range.start.line == 8 and not lf.fixes


def test_custom_code_is_anchored_on_the_risky_operation_and_guarded(tmp_path):
    path, src = write(tmp_path, '''
        import tensorflow as tf

        def my_loss(y_true, y_pred):
            diff = y_true - y_pred
            return tf.reduce_mean(tf.math.log(y_pred) * diff)
    ''')
    code = CodeLocation(str(path), 3, "my_loss")
    lf = Locator(Trace(str(path))).locate(finding(CodeTarget(code=code), FixSpec("guard", Guard("operand")), root="numerical_operation"))
    assert lf.range.start.line == 5 and src.splitlines()[4][lf.range.start.column - 1:].startswith("tf.math.log(y_pred)")
    assert "tf.math.log(tf.maximum(y_pred, 1e-7))" in apply_fix(src, lf.fixes[0])


def test_swapped_loss_parameters_are_anchored_on_the_signature_and_swapped_there(tmp_path):
    path, src = write(tmp_path, '''
        from keras import ops

        def bce(y_pred: "Tensor", y_true):
            return -ops.mean(y_true * ops.log(y_pred))
    ''')
    code = CodeLocation(str(path), 3, "bce", params=("y_pred", "y_true"))
    lf = Locator(Trace(str(path))).locate(finding(CodeTarget(code=code, part="params"), FixSpec("swap", SwapParams()), root="loss"))
    line = src.splitlines()[2]
    assert lf.range.start.line == 3 and line[lf.range.start.column - 1:lf.range.end.column - 1] == 'y_pred: "Tensor", y_true'
    fixed = apply_fix(src, lf.fixes[0]).splitlines()
    assert fixed[2] == 'def bce(y_true: "Tensor", y_pred):' and fixed[3] == src.splitlines()[3]  # the body keeps its names


@pytest.mark.parametrize("expr, probability, expected", [
    # As keras.losses.msle: the prediction is clamped, not the sum (which would hide a negative prediction).
    ("tf.math.log(y_pred + 1.0)", False, "tf.math.log(tf.maximum(y_pred, 1e-7) + 1.0)"),
    # A probability is clipped on both sides, as Keras' cross-entropies do: log(1 - p) is safe too.
    ("keras.ops.log(1.0 - y_pred)", True, "keras.ops.log(1.0 - keras.ops.clip(y_pred, 1e-7, 1 - 1e-7))"),
    ("np.log(y_pred)", True, "np.log(np.clip(y_pred, 1e-7, 1 - 1e-7))"),
    ("tf.sqrt(y_true - y_pred)", False, "tf.sqrt(tf.maximum(y_true - y_pred, 0.0))"),
])
def test_loss_guards_follow_the_keras_losses_convention(tmp_path, expr, probability, expected):
    path, src = write(tmp_path, f'''
        import numpy as np
        import keras
        import tensorflow as tf

        def my_loss(y_true, y_pred):
            return {expr}
    ''')
    code = CodeLocation(str(path), 5, "my_loss")
    spec = FixSpec("guard", Guard("probability" if probability else "operand"))
    lf = Locator(Trace(str(path))).locate(finding(CodeTarget(code=code), spec, root="numerical_operation"))
    assert apply_fix(src, lf.fixes[0]).splitlines()[5].strip() == f"return {expected}"


def test_functional_call_maps_to_the_constructor_not_the_application(tmp_path):
    path, src = write(tmp_path, '''
        import keras
        x = keras.layers.Dense(8, activation="relu")(inp)
    ''')
    frame = call_frame(path, src, 'keras.layers.Dense(8, activation="relu")', occurrence=1)  # the inner call
    layers = [LayerInfo(0, "d0", "Dense", site=[frame])]
    lf = Locator(Trace(str(path), layers=layers)).locate(finding(LayerArg(layer=0, arg="units", position=0), FixSpec("units", NewValue("16"))))
    assert apply_fix(src, lf.fixes[0]).splitlines()[1] == 'x = keras.layers.Dense(16, activation="relu")(inp)'


def test_keras2_keyword_is_renamed_in_place(tmp_path):
    path, src = write(tmp_path, '''
        import keras
        opt = keras.optimizers.SGD(lr=0.01)
    ''')
    frame = Frame(str(path), 2, 2, 6, 35)
    lf = Locator(Trace(str(path))).locate(Finding("keras3-incompatible", "error", "crash", None, "m", FrameTarget(frame=frame),
                                                  fixes=[FixSpec("rename", Rename("lr", "learning_rate"))]))
    assert apply_fix(src, lf.fixes[0]).splitlines()[1] == "opt = keras.optimizers.SGD(learning_rate=0.01)"


def test_a_layer_is_replaced_from_its_own_module_and_a_penalty_keeps_its_function(tmp_path):
    path, src = write(tmp_path, '''
        import keras
        model = keras.Sequential([
            keras.layers.Dense(10, kernel_regularizer=keras.regularizers.l2(0.5)),
            keras.layers.ReLU(),
        ])
    ''')
    layers = [LayerInfo(0, "d0", "Dense", site=[call_frame(path, src, "keras.layers.Dense")]),
              LayerInfo(1, "r", "ReLU", site=[call_frame(path, src, "keras.layers.ReLU")])]
    loc = Locator(Trace(str(path), layers=layers))
    act = loc.locate(finding(Layer(layer=1), FixSpec("softmax", LayerCall('Activation("softmax")'))))
    assert apply_fix(src, act.fixes[0]).splitlines()[3].strip() == 'keras.layers.Activation("softmax"),'
    reg = loc.locate(finding(LayerArg(layer=0, arg="kernel_regularizer"), FixSpec("penalty", CallArgs("1e-4")), root="regularization"))
    assert apply_fix(src, reg.fixes[0]).splitlines()[2].strip() == "keras.layers.Dense(10, kernel_regularizer=keras.regularizers.l2(1e-4)),"


def test_every_target_kind_has_one_anchoring_strategy():
    assert set(Anchors(Trace("/tmp/model.py")).by_type) == set(get_args(Target))


def test_a_loss_made_by_a_factory_is_anchored_on_the_numbers_it_captured(tmp_path):
    path, src = write(tmp_path, '''
        from keras import ops
        def focal_loss(gamma=2., alpha=2.):
            def focal_loss_fixed(y_true, y_pred):
                return -ops.sum(alpha * ops.power(1. - y_pred, gamma) * ops.log(y_pred))
            return focal_loss_fixed
        model.compile(optimizer="adam", loss=focal_loss())
    ''')
    code = CodeLocation(str(path), 3, "focal_loss_fixed", params=("y_true", "y_pred"), free={"alpha": 2.0, "gamma": 2.0})
    lf = Locator(Trace(str(path))).locate(finding(CodeTarget(code=code, part="hyperparameters"), root="loss"))
    assert (lf.range.start.line, lf.range.start.column, lf.range.end.column) == (2, 16, 34)  # gamma=2., alpha=2.
    # A loss written as a plain function: its own signature.
    path.write_text("from keras import ops\ndef my_loss(y_true, y_pred, w=3.0):\n    return ops.mean(w * (y_true - y_pred) ** 2)\n")
    lf = Locator(Trace(str(path))).locate(finding(CodeTarget(CodeLocation(str(path), 2, "my_loss", params=code.params), part="hyperparameters"), root="loss"))
    assert (lf.range.start.line, lf.range.start.column) == (2, 1)


def test_non_finite_batches_of_a_generator_point_at_the_division_inside_it(tmp_path):
    path, src = write(tmp_path, '''
        import numpy as np
        class Data:
            def __init__(self, maximum):
                self.maximum_val = maximum
            def generator(self, batch_size):
                while True:
                    x = np.random.rand(batch_size, 18)
                    yield np.asarray(x) / self.maximum_val, x
        data = Data(np.zeros(18))
        model.fit(data.generator(32), steps_per_epoch=10, epochs=3)
    ''')
    fit = FitInfo([call_frame(path, src, "model.fit")], None, None, 32, False, 3, 3, 10, False)
    lf = Locator(Trace(str(path), fit=fit)).locate(
        finding(NonfiniteData(arg="x", position=0), FixSpec("guard", Guard("operand")), root="data_normalization"))
    assert (lf.range.start.line, lf.range.start.column) == (8, 19)
    assert apply_fix(src, lf.fixes[0]).splitlines()[7].strip() == "yield np.asarray(x) / (self.maximum_val + 1e-7), x"


def test_nan_that_a_fill_let_through_points_at_the_reduction_that_nan_spoils(tmp_path):
    """Missing values filled with the column mean, taken with np.mean: the mean is NaN, so the fill
    keeps every NaN. The place is the mean, the fix its NaN-ignoring twin."""
    path, src = write(tmp_path, '''
        import numpy as np
        data = load()
        col_mean = np.mean(data, axis=0)
        data = np.where(np.isnan(data), col_mean, data)
        X = np.delete(scaler.fit_transform(data), 3, axis=1)
        model.fit(X, y, epochs=10)
    ''')
    fit = FitInfo([call_frame(path, src, "model.fit")], None, None, 32, False, 10, 10, 5, False)
    lf = Locator(Trace(str(path), fit=fit)).locate(
        finding(NonfiniteData(arg="x", position=0), FixSpec("safe", Guard("operand")), root="data_normalization"))
    assert (lf.range.start.line, lf.range.start.column) == (3, 12)
    assert apply_fix(src, lf.fixes[0]).splitlines()[2] == "col_mean = np.nanmean(data, axis=0)"


def test_a_keras_model_subclass_is_parsed_without_reading_keras_sources():
    """The locator's syntax tree of a script that subclasses keras.Model is built from the script
    alone: astroid, left to itself, parses Keras' own sources for it (seconds of every analysis of
    such a script, after its training). Checked in a fresh interpreter, whose astroid has read nothing."""
    import subprocess
    import sys

    script = textwrap.dedent("""\
        import keras
        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.hidden = keras.layers.Dense(8)
            def call(self, x):
                return self.hidden(x)
        """)
    probe = ("import sys, astroid\nfrom deeplocalize.source import parse\n"
             "module = parse(sys.stdin.read(), 'train.py')\n"
             "print(module.body[1].name, sorted(k for k in astroid.MANAGER.astroid_cache if k.split('.')[0] in ('keras', 'tensorflow')))")
    done = subprocess.run([sys.executable, "-c", probe], input=script, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["Net", "[]"], done.stderr
