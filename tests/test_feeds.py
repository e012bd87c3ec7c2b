"""Data fixes change every call that feeds the model alike (fit, validation, evaluate, predict)."""

from __future__ import annotations

import textwrap

from deeplocalize import feeds
from deeplocalize.edits import apply_edits
from deeplocalize.source import load_source


def _feeds(tmp_path, code: str):
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(code).lstrip())
    src = load_source(str(path))
    fit = next(c for c in src.module.nodes_of_class(feeds.nodes.Call) if feeds.call_name(c) == "fit")
    return src, feeds.find_feeds(src, fit)


def _first_layer(src, text: str):
    calls = [c for c in src.module.nodes_of_class(feeds.nodes.Call) if feeds.text_of(src, c) == text]
    return src, calls[0]


SPLIT = '''
    import keras
    from sklearn.model_selection import train_test_split
    X_train, X_test, y_train, y_test = train_test_split(X, y)
    model = keras.Sequential([
        keras.Input(shape=(13,)),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(1),
    ])
    model.compile(loss="mse")
    history = model.fit(X_train, y_train, validation_data=(X_test, y_test), epochs=3)
    print(model.evaluate(X_test, y_test))
    pred = model.predict(X_test)[:, 0]
    print(abs(pred - y_test).mean())
'''


def test_standard_scaler_is_fitted_on_training_data_and_applied_to_every_feed(tmp_path):
    src, found = _feeds(tmp_path, SPLIT)
    fixes = feeds.input_scaling_fixes(found, 2, None)
    scaler = next(f for f in fixes if "StandardScaler" in f.title)
    out = apply_edits(src.text, scaler.edits)
    assert "from sklearn.preprocessing import StandardScaler\n" in out
    assert "scaler = StandardScaler().fit(X_train)\nhistory = model.fit(scaler.transform(X_train), y_train, validation_data=(scaler.transform(X_test), y_test)" in out
    assert "model.evaluate(scaler.transform(X_test), y_test)" in out and "model.predict(scaler.transform(X_test))[:, 0]" in out
    # Other uses of the arrays keep their meaning (the names are not rebound).
    assert "print(abs(pred - y_test).mean())" in out
    compile(out, "train.py", "exec")


def test_normalization_layer_goes_first_and_is_adapted_before_fit(tmp_path):
    src, found = _feeds(tmp_path, SPLIT)
    fixes = feeds.input_scaling_fixes(found, 2, _first_layer(src, 'keras.layers.Dense(8, activation="relu")'))
    assert "Normalization" in fixes[0].title and len(fixes) == 2  # the layer first, then the scaler
    out = apply_edits(src.text, fixes[0].edits)
    assert 'keras.Input(shape=(13,)),\n    keras.layers.Normalization(name="input_normalization"),\n    keras.layers.Dense(8' in out
    assert 'model.get_layer("input_normalization").adapt(X_train)\nhistory = model.fit(X_train' in out
    assert "model.evaluate(X_test, y_test)" in out  # the layer travels with the model
    compile(out, "train.py", "exec")


def test_normalization_layer_in_add_and_functional_styles(tmp_path):
    src, found = _feeds(tmp_path, '''
        model = keras.Sequential()
        model.add(keras.Input(shape=(4,)))
        model.add(keras.layers.Dense(8))
        model.fit(x, y)
    ''')
    out = apply_edits(src.text, feeds.normalization_layer_fix(found, _first_layer(src, "keras.layers.Dense(8)")).edits)
    assert 'model.add(keras.Input(shape=(4,)))\nmodel.add(keras.layers.Normalization(name="input_normalization"))\nmodel.add(keras.layers.Dense(8))' in out

    src, found = _feeds(tmp_path, '''
        inputs = keras.Input(shape=(4,))
        h = keras.layers.Dense(8)(inputs)
        net = keras.Model(inputs, keras.layers.Dense(1)(h))
        net.fit(x, y)
    ''')
    out = apply_edits(src.text, feeds.normalization_layer_fix(found, _first_layer(src, "keras.layers.Dense(8)")).edits)
    assert 'h = keras.layers.Dense(8)(keras.layers.Normalization(name="input_normalization")(inputs))' in out
    assert 'net.get_layer("input_normalization").adapt(x)\nnet.fit(x, y)' in out


def test_numpy_statistics_per_channel_for_images(tmp_path):
    src, found = _feeds(tmp_path, '''
        def train(model, images, labels, test_images):
            model.fit(images, labels)
            return model.predict(test_images)
    ''')
    fix = feeds.input_scaling_fixes(found, 4, None)[0]
    out = apply_edits(src.text, fix.edits)
    assert "    x_mean, x_std = images.mean(axis=(0, 1, 2)), images.std(axis=(0, 1, 2)) + 1e-8\n    model.fit((images - x_mean) / x_std, labels)" in out
    assert "model.predict((test_images - x_mean) / x_std)" in out


def test_target_scaling_maps_predictions_back(tmp_path):
    src, found = _feeds(tmp_path, SPLIT)
    out = apply_edits(src.text, feeds.target_scaling_fix(found).edits)
    assert "y_mean, y_std = y_train.mean(axis=0), y_train.std(axis=0)\n" in out
    assert "validation_data=(X_test, (y_test - y_mean) / y_std)" in out and "model.evaluate(X_test, (y_test - y_mean) / y_std)" in out
    assert "pred = (model.predict(X_test) * y_std + y_mean)[:, 0]" in out
    assert "print(abs(pred - y_test).mean())" in out  # the script's own metric stays in original units


def test_no_partial_fix_when_some_data_cannot_be_reached(tmp_path):
    src, found = _feeds(tmp_path, '''
        val = (X_val, y_val)
        model.fit(X_train, y_train, validation_data=val)
    ''')
    assert found.unreachable
    assert feeds.input_scaling_fixes(found, 2, None) == []  # half the data scaled is worse than none

    src, found = _feeds(tmp_path, '''
        def report(model):
            print(model.evaluate(X_test, y_test))
        model.fit(X_train, y_train)
        report(model)
    ''')
    assert found.unreachable and feeds.target_scaling_fix(found) is None


def test_names_in_use_are_not_shadowed(tmp_path):
    src, found = _feeds(tmp_path, '''
        x_mean = 3
        model.fit(X, y)
    ''')
    fix = feeds.input_scaling_fixes(found, 2, None)[0]
    assert "x_mean_2, x_std = X.mean(axis=0)" in apply_edits(src.text, fix.edits)


def test_label_range_fixes_use_training_labels_and_reach_every_feed(tmp_path):
    src, found = _feeds(tmp_path, SPLIT)
    out = apply_edits(src.text, feeds.label_range_fix(found, "Map the labels to 0/1", "unit").edits)
    assert "y_min, y_max = y_train.min(), y_train.max()\nhistory = model.fit(X_train, (y_train - y_min) / (y_max - y_min)" in out
    assert "model.evaluate(X_test, (y_test - y_min) / (y_max - y_min))" in out
    out = apply_edits(src.text, feeds.label_range_fix(found, "Shift the labels", "shift").edits)
    assert "validation_data=(X_test, (y_test - y_min))" in out
