"""Judging a fix by the whole script's own results (pure parts; the real runs are in
test_fixtures / test_real_corpus, and one real run here)."""

from __future__ import annotations

import asyncio
import math
import textwrap

import pytest

from deeplocalize.runner import RunOptions
from deeplocalize.script import describe
from deeplocalize.trace import ScriptResult
from deeplocalize.wholescript import ScriptRun, regressions, run_to_end


def run(status="completed", fit=None, evals=(), loss="sparse_categorical_crossentropy", scale=1.0, message="", samples=None):
    fits = [ScriptResult(fit, loss=loss, target_scale=scale, samples=samples)] if fit is not None else []
    return ScriptRun(status, message, fits, [ScriptResult(e, loss=loss, target_scale=scale) for e in evals])


def test_better_or_equal_results_pass():
    before = run(fit={"loss": 1.1, "accuracy": 0.40}, evals=[{"loss": 1.2, "accuracy": 0.38}])
    after = run(fit={"loss": 0.2, "accuracy": 0.96}, evals=[{"loss": 0.3, "accuracy": 0.95}])
    assert regressions(before, after) == []


def test_worse_test_accuracy_or_nan_is_reported():
    before = run(fit={"loss": 0.5, "accuracy": 0.80}, evals=[{"loss": 0.6, "accuracy": 0.78}])
    after = run(fit={"loss": 0.4, "accuracy": 0.85}, evals=[{"loss": 2.0, "accuracy": 0.30}])
    problems = regressions(before, after)
    assert any("evaluate #1: accuracy" in p for p in problems)
    assert any("became NaN" in p for p in regressions(before, run(fit={"loss": math.nan, "accuracy": 0.1})))


def test_a_classifier_is_judged_by_its_accuracy_not_an_epoch_averaged_loss():
    # Leaky ReLU on unscaled images: a rough first epoch lifts the mean training loss, accuracy triples.
    before = run(fit={"loss": 2.33, "accuracy": 0.12, "val_accuracy": 0.11}, evals=[{"loss": 2.30, "accuracy": 0.11}])
    after = run(fit={"loss": 4.79, "accuracy": 0.38, "val_accuracy": 0.60}, evals=[{"loss": 1.25, "accuracy": 0.60}])
    assert regressions(before, after) == []


def test_one_sample_flipping_on_a_tiny_dataset_is_not_a_regression():
    before, after = ({"loss": 0.44, "accuracy": 0.6667}, {"loss": 0.43, "accuracy": 0.3333})
    assert regressions(run(fit=before, samples=3), run(fit=after, samples=3)) == []  # XOR: three training samples
    assert regressions(run(fit=before, samples=300), run(fit=after, samples=300))


def test_a_classifier_that_guessed_before_the_fix_has_no_accuracy_to_lose():
    # A diverged binary RNN answers one class (0.52), and still guesses with a rate that does not heal it: the other class.
    before, after = run(fit={"loss": 0.70, "accuracy": 0.5188}), run(fit={"loss": 0.69, "accuracy": 0.4789})
    assert regressions(before, after, chance_accuracy=0.52) == []
    assert regressions(before, after)  # without the class prior, it reads as a drop
    assert regressions(run(fit={"loss": 0.3, "accuracy": 0.90}), run(fit={"loss": 0.3, "accuracy": 0.52}), chance_accuracy=0.52)
    # Labels outside the loss' range (+-1 for a binary cross-entropy): its loss meant nothing; mapped to 0/1, it means something.
    assert regressions(run(fit={"loss": 0.15, "accuracy": 0.50}), run(fit={"loss": 0.68, "accuracy": 0.55}), chance_accuracy=0.52) == []
    assert any("became NaN" in p for p in regressions(before, run(fit={"loss": math.nan, "accuracy": 0.48}), chance_accuracy=0.52))


def test_a_crash_after_the_fix_fails_and_completing_after_a_crash_passes():
    ok = run(fit={"loss": 0.5})
    crashed = run("crashed", message="ValueError: shapes")
    assert "no longer completes" in regressions(ok, crashed)[0]
    assert "still does not complete" in regressions(crashed, crashed)[0]
    assert regressions(crashed, ok) == []


def test_regression_errors_are_compared_relative_to_the_targets_spread():
    # Targets standardized by the fix: an MAE of 0.3 (std 1) beats 300 000 (std 120 000).
    before = run(fit={"loss": 310000.0}, evals=[{"loss": 284000.0}], loss="mean_absolute_error", scale=120000.0)
    after = run(fit={"loss": 0.3}, evals=[{"loss": 0.35}], loss="mean_absolute_error", scale=1.0)
    assert regressions(before, after) == []
    worse = run(fit={"loss": 3.0}, evals=[{"loss": 3.5}], loss="mean_absolute_error", scale=1.0)
    assert regressions(before, worse)


def test_a_changed_loss_function_or_a_meaningless_before_value_is_not_compared():
    before = run(fit={"loss": 0.01, "accuracy": 0.5}, loss="mean_squared_error")
    after = run(fit={"loss": 0.7, "accuracy": 0.9}, loss="binary_crossentropy")
    assert regressions(before, after) == []
    negative = run(fit={"loss": -5.9}, loss="binary_crossentropy")  # labels in {-1, 1}
    assert regressions(negative, run(fit={"loss": 0.19}, loss="binary_crossentropy")) == []


def test_a_negative_cross_entropy_after_the_fix_means_some_labels_were_left_out():
    # Training labels mapped to {0, 1}, the test labels left in {-1, 1}.
    before = run(fit={"loss": -0.6, "acc": 0.0}, evals=[{"loss": -0.39, "acc": 0.0}], loss="binary_crossentropy")
    after = run(fit={"loss": 0.17, "acc": 1.0}, evals=[{"loss": -0.28, "acc": 0.49}], loss="binary_crossentropy")
    assert any("evaluate #1: loss is negative" in p for p in regressions(before, after))


@pytest.mark.slow
def test_a_script_runs_to_its_end_with_its_own_results_recorded(tmp_path, session):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent('''
        import numpy as np
        import keras
        rng = np.random.default_rng(0)
        x = rng.normal(size=(256, 4)).astype("float32")
        y = (x[:, 0] > 0).astype("int32")
        model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=7, validation_split=0.25, verbose=0)
        loss, acc = model.evaluate(x[:64], y[:64], verbose=0)
        print("after fit", acc)
        raise SystemExit(0)
    '''))
    result = asyncio.run(run_to_end(describe(str(script)), RunOptions(max_epochs=3), session))
    assert result.status == "completed", result.message
    assert len(result.fits) == 1 and {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(result.fits[0].values)
    # evaluate returned the list the script unpacked, and its results were recorded by name.
    assert len(result.evaluations) == 1 and set(result.evaluations[0].values) == {"loss", "accuracy"}
