"""Detectors on synthetic traces: no TensorFlow involved."""

from __future__ import annotations

import math

import pytest
import numpy as np

from conftest import TraceBuilder, act, weights
from deeplocalize.findings import Guard, LayerArg, LayerCall, NewValue, SwapParams, target_layer
from deeplocalize.trace import CodeLocation, CrashInfo
from deeplocalize.detectors import diagnose, is_decisive, measure
from deeplocalize.detectors.numerical import first_nonfinite


def serious(findings):
    return [f for f in findings if f.severity in ("error", "warning")]


def test_healthy_run_has_no_findings():
    tb = TraceBuilder(["relu", "relu", "softmax"]).healthy()
    assert serious(diagnose(tb.trace)) == []


def test_nan_is_attributed_to_the_first_layer_whose_output_goes_non_finite():
    tb = TraceBuilder(["relu", "relu", "softmax"], lr=50.0).healthy(epochs=1)
    bad = act(nonfinite=1.0)
    tb.step(1, float("nan"), acts=[act(), bad, bad])
    pos, kind, layer = first_nonfinite(tb.trace)
    assert (pos, kind, layer) == (len(tb.trace.steps) - 1, "out", 1)
    nan = [f for f in diagnose(tb.trace) if f.symptom == "nan_inf"]
    assert nan and nan[0].severity == "error"
    assert nan[0].root_cause == "learning_rate"  # 50 is 50000x Adam's default
    assert nan[0].target.kind == "optimizer_arg" and nan[0].target.arg == "learning_rate"
    assert is_decisive(tb.trace)


def test_nan_born_in_a_custom_loss_points_at_its_code():
    tb = TraceBuilder(["relu", None], units=[16, 1], loss="msle")
    tb.trace.compile.loss = {"kind": "function", "name": "my_loss"}
    tb.trace.compile.loss_code = CodeLocation("/tmp/model.py", 5, "my_loss")
    tb.step(0, float("nan"))
    f = [x for x in diagnose(tb.trace) if x.symptom == "nan_inf"][0]
    assert f.root_cause == "numerical_operation"
    assert f.target.kind == "code" and f.target.code.line == 5


@pytest.mark.parametrize("params, swapped", [
    (["y_pred", "y_true"], True), (["logits", "labels"], True), (["output", "target"], True),
    (["y_true", "y_pred"], False), (["a", "b"], False), (["y", "y_hat"], False), (["y_pred"], False),
])
def test_a_custom_loss_declared_predictions_first_is_blamed_on_its_parameters_not_guarded(params, swapped):
    """Keras calls loss(y_true, y_pred): a loss declared (y_pred, y_true) takes the log of the labels.
    A guard would hide the NaN and keep the loss meaningless, so the swap comes first, the guard after it."""
    tb = TraceBuilder(["relu", "sigmoid"], units=[16, 1], loss="binary_crossentropy")
    tb.trace.compile.loss = {"kind": "function", "name": "my_loss"}
    tb.trace.compile.loss_code = CodeLocation("/tmp/model.py", 5, "my_loss", params=tuple(params))
    tb.step(0, float("nan"))
    f = [x for x in diagnose(tb.trace) if x.symptom == "nan_inf"][0]
    assert f.code == "nan-in-custom-loss" and f.target.code.line == 5
    if swapped:
        assert f.root_cause == "loss" and f.target.part == "params" and f.fixes[0].change == SwapParams()
        assert [a.root_cause for a in f.alternatives] == ["numerical_operation"] and isinstance(f.alternatives[0].fixes[0].change, Guard)
    else:
        assert f.root_cause == "numerical_operation" and isinstance(f.fixes[0].change, Guard) and not f.alternatives


def test_a_custom_loss_that_went_below_zero_before_the_nan_is_blamed_on_its_numbers_not_the_step():
    """Issue 21, class 1: a focal loss with a class weight above 1 (1 - alpha < 0) starts positive,
    runs negative, then overflows. Before, the elimination order blamed the learning rate; a guard
    would only hide the NaN. The loss is the cause, anchored on the numbers it computes with."""
    def run(losses: list[float]) -> list:
        tb = TraceBuilder(["relu", "sigmoid"], units=[16, 1], loss="binary_crossentropy")
        tb.trace.compile.loss = {"kind": "function", "name": "focal_loss_fixed"}
        tb.trace.compile.loss_code = CodeLocation("/tmp/model.py", 6, "focal_loss_fixed", params=("y_true", "y_pred"), free={"alpha": 2.0, "gamma": 2.0})
        for i, v in enumerate(losses):
            tb.step(i // 5, v)
        return [x for x in diagnose(tb.trace) if x.symptom == "nan_inf"]

    f = run([3.4, 3.1, 2.5, 1.2, 0.3, -2.0, -9.5, -31.0, -58.8, float("nan")])[0]
    assert f.code == "loss-unbounded-below" and f.root_cause == "loss" and f.severity == "error"
    assert f.target.kind == "code" and f.target.part == "hyperparameters" and "alpha=2" in f.message
    assert [a.root_cause for a in f.alternatives] == ["numerical_operation"]  # never a smaller step
    # A loss that stays positive until its NaN is the operation's, as before.
    assert run([3.4, 3.1, 2.5, 1.2, 0.3, float("nan")])[0].code == "nan-in-custom-loss"


def test_a_fix_that_leaves_a_loss_below_zero_is_refuted_even_when_the_values_stay_finite():
    from deeplocalize.verify import judge

    before = {"finite": False, "loss_start": 3.4, "loss_min": -58.8}
    verdict, reason, measure_key = judge(before, {"finite": True, "loss_start": 3.3, "loss_min": -12.0}, False, False)
    assert (verdict, measure_key) == ("refuted", "loss_min") and "below zero" in reason
    assert judge(before, {"finite": True, "loss_start": 0.9, "loss_min": 0.05}, False, False)[0] == "verified"


def test_nan_born_in_custom_code_while_the_rate_is_far_too_high_lets_the_experiment_try_both():
    """A VAE's sampling layer overflows first (exp of a log-variance) with a learning rate of 10:
    the guard and the rate are both candidates; the experiment decides."""
    tb = TraceBuilder(["relu", None, "sigmoid"], units=[16, 4, 1], loss="binary_crossentropy", lr=10.0)
    tb.layers[1].cls, tb.layers[1].custom = "Sampling", True
    tb.layers[1].call_code = CodeLocation("/tmp/model.py", 8, "call", risky=("exp",))
    tb.step(0, 0.7)
    tb.step(0, float("nan"), acts=[act(), act(nonfinite=1.0), act(nonfinite=1.0)])
    f = [x for x in diagnose(tb.trace) if x.symptom == "nan_inf"][0]
    assert f.code == "nan-in-custom-code" and isinstance(f.fixes[0].change, Guard)
    assert "learning_rate" in [a.root_cause for a in f.alternatives]


def test_nan_in_the_first_layer_with_steady_finite_weights_came_with_the_data():
    """A generator's batches are not seen as arrays; NaN in the first layer's forward pass before any
    update, or after a calm step with its weights finite and steady, can only have come in with them
    (a pipeline that goes bad late). Weights that jumped may have overflowed the layer themselves."""
    def first_nonfinite_at(step: int, w_norm: float = 5.0, calm_max: float = 2.0) -> list:
        tb = TraceBuilder(["relu", "sigmoid"], units=[16, 1], loss="mse")
        tb.trace.fit.x = None
        for g in range(step):
            tb.step(0, 0.5, pre={0: act(vmax=calm_max)})
        tb.step(0, float("nan"), acts=[act(nonfinite=1.0), act(nonfinite=1.0)], pre={0: act(nonfinite=1.0)},
                w=[weights(norm=w_norm), weights()])
        return [f for f in diagnose(tb.trace) if f.symptom == "nan_inf"]

    f = first_nonfinite_at(0)[0]
    assert f.code == "nan-in-inputs" and f.target.kind == "nonfinite_data" and "before any update" in f.message
    late = first_nonfinite_at(300)[0]
    assert late.code == "nan-in-inputs" and late.evidence["seen_in"] == "batch 301"
    assert first_nonfinite_at(3, w_norm=5e6)[0].code != "nan-in-inputs"  # the weights jumped: they may have made it
    assert first_nonfinite_at(3, calm_max=1e6)[0].code != "nan-in-inputs"  # the layer was already diverging


def test_initial_weight_scale_decides_between_initialization_and_learning_rate():
    zeros = [weights(kernel_std=0.0), weights(kernel_std=0.0), weights()]
    tb = TraceBuilder(["relu", "relu", "softmax"])
    for e in range(10):
        for s in range(10):
            tb.step(e, math.log(10), w=zeros, acts=[act(dead=1.0, nonpos=1.0)] * 2 + [act()], grads=[0.0, 0.0, 0.1])
        tb.epoch(e, math.log(10), 0.1)
    f = serious(diagnose(tb.trace))
    assert f and f[0].root_cause == "initialization"
    assert f[0].target.kind == "layer_arg" and f[0].target.arg == "kernel_initializer" and f[0].target.layer == 0


def test_vanishing_gradients_through_sigmoid_stack_blame_activation():
    acts = ["sigmoid"] * 6 + ["softmax"]
    tb = TraceBuilder(acts)
    grads = [1e-9, 1e-8, 1e-7, 1e-6, 1e-4, 1e-3, 1e-1]
    for e in range(10):
        for s in range(10):
            tb.step(e, math.log(10) - 0.001 * e, grads=grads)
        tb.epoch(e, math.log(10) - 0.001 * e, 0.11)
    f = [x for x in diagnose(tb.trace) if x.symptom == "vanishing_gradient"]
    assert f and f[0].root_cause == "activation" and f[0].target.arg == "activation"


def test_dead_relu_needs_a_sustained_majority_of_dead_units():
    mostly_alive = TraceBuilder(["relu", "relu", "softmax"])
    for e in range(5):
        for s in range(10):
            mostly_alive.step(e, 2.0 - 0.3 * e, acts=[act(dead=0.5), act(dead=0.5), act()])
        mostly_alive.epoch(e, 2.0 - 0.3 * e, 0.2 + 0.15 * e)
    assert not [f for f in diagnose(mostly_alive.trace) if f.symptom == "dead_relu"]

    dead = TraceBuilder(["relu", "relu", "softmax"], lr=0.05)
    for e in range(5):
        for s in range(10):
            dead.step(e, math.log(10), acts=[act(dead=1.0, nonpos=1.0), act(dead=1.0), act()])
        dead.epoch(e, math.log(10), 0.1)
    found = [f for f in diagnose(dead.trace) if f.symptom == "dead_relu"]
    assert found and found[0].severity == "warning" and found[0].root_cause == "learning_rate"


def test_update_ratio_tiny_with_explicit_low_rate_is_a_learning_rate_fault():
    tb = TraceBuilder(["relu", "softmax"], optimizer="SGD", lr=1e-6)
    for e in range(10):
        for s in range(10):
            tb.step(e, math.log(10), upd_ratio=1e-8)
        tb.epoch(e, math.log(10), 0.1)
    f = serious(diagnose(tb.trace))
    assert f[0].code == "weights-barely-change" and f[0].root_cause == "learning_rate"
    assert f[0].fixes[0].change == NewValue("0.01")


def test_slow_optimizer_at_default_rate_is_an_optimizer_fault():
    tb = TraceBuilder(["relu", "softmax"], optimizer="Adadelta", lr=0.001)
    for e in range(10):
        for s in range(10):
            tb.step(e, math.log(10), upd_ratio=1e-7)
        tb.epoch(e, math.log(10), 0.1)
    f = serious(diagnose(tb.trace))
    assert f[0].root_cause == "optimizer"


def test_static_rules_output_activation_vs_loss():
    relu_out = TraceBuilder(["relu", "relu"])
    f = diagnose(relu_out.trace)
    assert f[0].code == "output-not-distribution" and f[0].root_cause == "activation" and f[0].target.layer == 1
    assert f[0].fixes[0].change == NewValue('"softmax"')

    single = TraceBuilder(["relu", "softmax"], units=[8, 1], loss="binary_crossentropy", n_classes=2)
    assert diagnose(single.trace)[0].code == "softmax-single-unit"

    binary_on_multiclass = TraceBuilder(["relu", "softmax"], units=[8, 3], loss="binary_crossentropy", n_classes=3)
    assert diagnose(binary_on_multiclass.trace)[0].root_cause == "loss"


def test_label_rules_tell_off_by_one_labels_from_too_few_units():
    off = TraceBuilder(["relu", "softmax"])
    off.trace.fit.y.update({"min": 1.0, "max": 10.0})
    f = diagnose(off.trace)[0]
    assert f.root_cause == "labels" and f.target.kind == "fit_data"

    few = TraceBuilder(["relu", "softmax"], units=[32, 5])
    f = diagnose(few.trace)[0]
    assert f.root_cause == "architecture" and f.target.arg == "units" and f.fixes[0].change == NewValue("10")


def test_not_learning_is_a_weak_finding_that_yields_to_specific_evidence():
    tb = TraceBuilder(["relu", "relu"])  # relu output + CE: a definite static error
    for e in range(5):
        for s in range(10):
            tb.step(e, 5.0)
        tb.epoch(e, 5.0, 0.1)
    f = diagnose(tb.trace)
    assert f[0].severity == "error"
    assert all(x.severity == "information" for x in f if x.code == "not-learning")


def test_a_schedule_that_cuts_the_rate_to_nothing_before_the_model_fits_is_blamed():
    def run(losses, accuracies, rates):
        tb = TraceBuilder(["relu", "softmax"])
        for e, (l, a, r) in enumerate(zip(losses, accuracies, rates)):
            for _ in range(10):
                tb.step(e, l)
            tb.epoch(e, l, a)
            tb.trace.epochs[-1].logs["learning_rate"] = r
        return [f for f in diagnose(tb.trace) if f.code == "learning-rate-decayed-away"]

    cut = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-8, 1e-8]
    stalled = [2.30, 2.10, 2.05, 2.04, 2.04, 2.04, 2.04, 2.04]
    found = run(stalled, [0.12, 0.2, 0.22, 0.22, 0.22, 0.22, 0.22, 0.22], cut)
    assert len(found) == 1 and found[0].severity == "warning" and found[0].root_cause == "learning_rate"
    assert found[0].target.kind == "fit_arg" and found[0].target.arg == "callbacks" and found[0].evidence["cut_at_epoch"] == 5
    # The same cut once the model fits, or a flat loss at a steady rate: not this fault.
    assert not run([2.3, 1.0, 0.5, 0.3, 0.2, 0.15, 0.12, 0.1], [0.3, 0.7, 0.85, 0.9, 0.95, 0.96, 0.97, 0.97], cut)
    assert not run(stalled, [0.12, 0.2, 0.22, 0.22, 0.22, 0.22, 0.22, 0.22], [1e-3] * 8)


def test_too_few_epochs_only_when_the_run_ended_by_itself_while_improving():
    def run(reason):
        tb = TraceBuilder(["relu", "softmax"])
        tb.trace.fit.epochs_requested = tb.trace.fit.epochs = 2
        for e, (l, a) in enumerate([(2.0, 0.3), (1.5, 0.5)]):
            for s in range(20):
                tb.step(e, l - 0.01 * s)
            tb.epoch(e, l, a)
        tb.trace.fit_end = {"reason": reason}
        return [f for f in diagnose(tb.trace) if f.code == "too-few-epochs"]

    assert run("completed") and run("completed")[0].target.arg == "epochs"
    assert not run("capped")


def test_early_stop_rule_inspects_each_step_once(monkeypatch):
    """The rule runs on every streamed event; rescanning the trace made the server unresponsive."""
    import deeplocalize.detectors as det

    calls = []
    real = det.step_has_nonfinite
    monkeypatch.setattr(det, "step_has_nonfinite", lambda s: calls.append(s.g) or real(s))
    tb = TraceBuilder(["relu", "softmax"])
    rule = det.StopWhenDecisive()
    for i in range(300):
        tb.step(0, 2.0)
        assert rule(tb.trace) is False
    assert sorted(calls) == list(range(300))
    tb.step(0, float("nan"))
    assert rule(tb.trace) is True


def test_builtin_loss_given_as_a_function_is_recognized():
    tb = TraceBuilder(["relu", "relu"], loss="categorical_crossentropy")
    tb.trace.compile.loss = {"kind": "function", "name": "categorical_crossentropy"}
    tb.trace.fit.y.update({"one_hot": True, "shape": [1000, 10], "integer_valued": True})
    assert diagnose(tb.trace)[0].code == "output-not-distribution"


def _poor_run(tb: TraceBuilder) -> TraceBuilder:
    for e in range(6):
        for s in range(10):
            tb.step(e, 2.0 - 0.05 * e)
        tb.epoch(e, 2.0 - 0.05 * e, 0.3)
    return tb


def test_smells_are_warnings_only_when_training_is_poor():
    linear = _poor_run(TraceBuilder([None, None, "softmax"]))
    f = [x for x in diagnose(linear.trace) if x.code == "no-nonlinearity"]
    assert f and f[0].severity == "warning" and f[0].target.layer == 0
    good = TraceBuilder([None, None, "softmax"]).healthy()
    assert not [x for x in diagnose(good.trace) if x.code == "no-nonlinearity"]

    raw = _poor_run(TraceBuilder(["relu", "softmax"]))
    raw.trace.fit.x.update({"max": 255.0, "min": 0.0})
    f = [x for x in diagnose(raw.trace) if x.root_cause == "data_normalization"]
    assert f and f[0].severity == "warning" and f[0].target.kind == "fit_data"
    raw_good = TraceBuilder(["relu", "softmax"]).healthy()
    raw_good.trace.fit.x.update({"max": 255.0, "min": 0.0})
    assert all(x.severity == "information" for x in diagnose(raw_good.trace))


def test_binary_loss_on_two_units_with_index_labels_is_a_loss_fault():
    tb = TraceBuilder(["relu", "softmax"], units=[16, 2], loss="binary_crossentropy", n_classes=2)
    f = diagnose(tb.trace)[0]
    assert f.code == "binary-loss-label-shape" and f.root_cause == "loss"
    tb.trace.fit.y.update({"one_hot": True, "shape": [1000, 2]})
    assert [x for x in diagnose(tb.trace) if x.severity == "error"] == []  # one-hot labels: a valid setup


# ------------------------------------------------------- activations from the layer graph
def _with_activation_layer(cls: str, activation: str, loss: str = "sparse_categorical_crossentropy") -> TraceBuilder:
    """Dense(10) (linear) followed by a layer that only applies an activation."""
    from deeplocalize.trace import Frame, LayerInfo

    tb = TraceBuilder(["relu", None], loss=loss)
    tb.layers[-1].is_output = False
    tb.layers.append(LayerInfo(2, "act", cls, activation, None, is_output=True, site=[Frame("/tmp/model.py", 12, 12, 4, 30)]))
    return tb


def test_output_activation_set_by_a_separate_layer_is_checked_and_located_there():
    tb = _with_activation_layer("ReLU", "relu").healthy()
    f = [x for x in diagnose(tb.trace) if x.code == "output-not-distribution"]
    assert f and f[0].severity == "error" and f[0].root_cause == "activation"
    assert f[0].target.kind == "layer" and f[0].target.layer == 2  # the ReLU() call is replaced
    assert f[0].fixes[0].change == LayerCall('Activation("softmax")')
    ok = _with_activation_layer("Activation", "softmax").healthy()
    assert serious(diagnose(ok.trace)) == []


def test_softmax_applied_in_call_is_inferred_from_the_predictions():
    tb = TraceBuilder(["relu", None]).healthy()
    for s in tb.trace.steps:
        s.values["y_pred"] = {"min": 0.01, "max": 0.6, "mean": 0.1, "std": 0.1, "nonfinite": 0.0, "rowsum_mean": 1.0, "rowsum_std": 1e-7}
    tb.trace.model_call_code = CodeLocation("/tmp/model.py", 30, "call")
    assert serious(diagnose(tb.trace)) == []  # a linear Dense, but call() applies softmax
    for s in tb.trace.steps:
        s.values["y_pred"].update(rowsum_mean=3.2, rowsum_std=0.5)  # relu-like outputs in call()
        s.values["y_pred"]["max"] = 2.5
    f = [x for x in diagnose(tb.trace) if x.code == "output-not-distribution"]
    assert f and f[0].target.kind == "code" and f[0].target.code.ops == ("relu", "relu6")


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "mse", "mean_absolute_error"])
def test_multi_label_targets_on_softmax_get_one_fix_changing_activation_and_loss(loss):
    """Certain before training with cross-entropy or a regression loss alike: softmax rows sum to one, multi-hot rows do not."""
    tb = TraceBuilder(["relu", "softmax"], units=[16, 3], loss=loss).healthy()
    tb.trace.fit.y = {"n": 1000, "min": 0.0, "max": 1.0, "integer_valued": True, "n_unique": 2, "shape": [1000, 3],
                      "one_hot": False, "multi_hot": True, "max_labels_per_row": 3.0}
    found = diagnose(tb.trace)
    f = [x for x in found if x.code == "multi-label-softmax"][0]
    assert f.severity == "error" and f.root_cause == "activation" and f.fixes[0].change == NewValue('"sigmoid"')
    assert [a.change for a in f.fixes[0].also] == [NewValue('"binary_crossentropy"')]
    assert not [x for x in found if x.code == "regression-loss-on-classes"]  # one finding, not two for one mistake


def test_sparse_labels_that_are_fractions_are_a_labels_fault():
    tb = TraceBuilder(["relu", "softmax"]).healthy()
    tb.trace.fit.y = {"n": 1000, "min": 0.0, "max": 9 / 255, "integer_valued": False, "n_unique": 10, "shape": [1000]}
    f = [x for x in diagnose(tb.trace) if x.code == "labels-not-class-indices"][0]
    assert f.severity == "error" and f.root_cause == "labels" and f.target.kind == "fit_data"


def test_training_accuracy_up_with_validation_at_chance_blames_the_labels():
    tb = TraceBuilder(["relu", "softmax"]).healthy()
    for i, e in enumerate(tb.trace.epochs):
        e.logs["val_accuracy"] = 0.09 + 0.01 * (i % 2)
    f = [x for x in diagnose(tb.trace) if x.code == "labels-unrelated-to-inputs"]
    assert f and f[0].severity == "warning" and f[0].root_cause == "labels"
    for i, e in enumerate(tb.trace.epochs):
        e.logs["val_accuracy"] = 0.3 + 0.06 * i  # generalizes: no finding
    assert not [x for x in diagnose(tb.trace) if x.code == "labels-unrelated-to-inputs"]


def test_a_fit_continued_by_a_later_fit_is_not_too_short():
    tb = TraceBuilder(["relu", "softmax"])
    tb.trace.fit.epochs_requested = tb.trace.fit.epochs = 2
    for e in range(2):
        for s in range(10):
            tb.step(e, 2.3 - 0.5 * e - 0.04 * s)
        tb.epoch(e, 2.0 - 0.6 * e, 0.3 + 0.2 * e)
    tb.trace.fit_end = {"reason": "completed"}
    assert [x for x in diagnose(tb.trace) if x.code == "too-few-epochs"]
    tb.trace.continued_later = True
    assert not [x for x in diagnose(tb.trace) if x.code == "too-few-epochs"]


def test_repeated_bad_initialization_is_fixed_on_every_layer_at_once():
    tb = TraceBuilder(["relu", "relu", "relu", "softmax"])
    tb.trace.initial_kernels = {0: (0.0, 64.0), 1: (0.0, 32.0), 2: (0.0, 32.0)}
    tb.healthy()
    f = [x for x in diagnose(tb.trace) if x.root_cause == "initialization"][0]
    assert f.target.layer == 0 and sorted(target_layer(a.target) for a in f.fixes[0].also) == [1, 2]


def test_nan_downstream_of_a_risky_lambda_points_at_the_lambda_never_at_a_higher_rate():
    from deeplocalize.trace import LayerInfo

    tb = TraceBuilder(["relu", None, "sigmoid"], units=[16, None, 1], loss="binary_crossentropy", n_classes=2)
    tb.layers[1] = LayerInfo(1, "lambda", "Lambda", None, None, call_code=CodeLocation("/tmp/model.py", 11, "<lambda>", risky=("log",)))
    tb.trace.layers = tb.layers
    tb.step(0, 0.7)
    bad = act(nonfinite=1.0)
    tb.step(0, float("nan"), acts=[act(), act(), bad])
    f = [x for x in diagnose(tb.trace) if x.symptom == "nan_inf"][0]
    assert f.code == "nan-in-custom-code" and f.root_cause == "numerical_operation" and f.target.code.line == 11
    for x in diagnose(tb.trace):
        for fix in x.fixes:
            assert not fix.title.startswith("Raise")


def test_diverging_weights_are_never_answered_by_a_larger_learning_rate():
    tb = TraceBuilder(["relu", "relu", "softmax"])
    for i in range(30):  # weights grow 300x while the per-step updates look small
        tb.step(i // 10, 2.3, w=[weights(norm=5.0 * (1 + 10 * i)) for _ in range(3)], upd_ratio=1e-6)
    for e in range(3):
        tb.epoch(e, 2.3, 0.1)
    f = [x for x in diagnose(tb.trace) if x.code == "exploding-gradients"][0]
    assert f.fixes and all(not fix.title.startswith("Raise") for fix in f.fixes)


def test_binary_labels_out_of_range_seen_only_in_the_batches_of_a_dataset():
    tb = TraceBuilder(["relu", "sigmoid"], units=[16, 1], loss="binary_crossentropy", n_classes=2).healthy()
    tb.trace.fit.y = None  # a tf.data pipeline: labels are only seen in-graph
    for s in tb.trace.steps[:5]:
        s.values["y"] = {"min": 1.0, "max": 2.0, "mean": 1.5, "nonfinite": 0.0}
    f = [x for x in diagnose(tb.trace) if x.code == "labels-outside-unit-interval"]
    assert f and f[0].severity == "error" and f[0].root_cause == "labels"


def test_unstable_training_keeps_every_candidate_cause_with_the_step_size_last():
    from deeplocalize.detectors.causes import candidate_causes

    tb = TraceBuilder(["relu", "relu", "softmax"], optimizer="SGD", lr=0.5)
    tb.trace.fit.x.update({"max": 300.0, "min": 0.0, "std": 80.0})
    causes = candidate_causes(tb.trace, diverging=True)
    assert [c.root for c in causes] == ["learning_rate", "data_normalization"]
    assert causes[0].fixes[0].change == NewValue("0.01")
    plain = TraceBuilder(["relu", "relu", "softmax"])
    causes = candidate_causes(plain.trace, diverging=True)
    assert [c.root for c in causes] == ["learning_rate"] and not causes[0].strong


def test_a_nan_finding_carries_the_other_candidates_as_alternatives():
    tb = TraceBuilder(["relu", "relu", "softmax"], optimizer="SGD", lr=0.5)
    tb.trace.fit.x.update({"max": 300.0, "min": 0.0, "std": 80.0})
    for s in range(5):
        tb.step(0, 2.0)
    tb.step(0, float("nan"), acts=[act(nonfinite=1.0)] * 3, w=[weights(norm=1e30)] * 3)  # the step blew the weights up
    nan = [f for f in diagnose(tb.trace) if f.code == "nan-inf"][0]
    assert nan.root_cause == "learning_rate"
    assert [a.root_cause for a in nan.alternatives] == ["data_normalization"]


def test_verdicts_compare_the_symptoms_measures():
    from deeplocalize.verify import judge

    assert judge({"finite": False}, {"finite": True, "loss": 0.5}, False, False)[0] == "verified"
    assert judge({"finite": False}, {"finite": False}, True, False)[0] == "refuted"
    # A fix that only hides the NaN (finite, but the loss stays at the loss of guessing) did not heal it.
    hidden = judge({"finite": False}, {"finite": True, "loss": 2.30, "loss_vs_chance": 1.0, "loss_drop": 0.01}, False, False)
    assert hidden[0] == "refuted" and "chance" in hidden[1]
    assert judge({"finite": False}, {"finite": True, "loss": 0.40, "loss_vs_chance": 0.17, "loss_drop": 0.8}, False, False)[0] == "verified"
    assert judge({"crashed": True, "error": "ValueError: x"}, {"finite": True}, False, False)[0] == "verified"
    assert judge({"finite": True, "accuracy": 0.5}, {"crashed": True, "error": "E"}, False, False)[0] == "refuted"
    # Clearly better, even when a rule still fires; no better is refuted, even when the rule is quiet.
    assert judge({"finite": True, "accuracy": 0.10}, {"finite": True, "accuracy": 0.91}, True, False)[0] == "verified"
    assert judge({"finite": True, "accuracy": 0.90}, {"finite": True, "accuracy": 0.90}, False, False)[0] == "refuted"
    assert judge({"finite": True, "accuracy": 0.80}, {"finite": True, "accuracy": 0.70}, False, False)[0] == "refuted"
    # Training measures lead for a training failure, validation accuracy for a generalization one.
    before, after = {"finite": True, "accuracy": 0.9, "val_accuracy": 0.5}, {"finite": True, "accuracy": 0.99, "val_accuracy": 0.5}
    assert judge(before, after, True, False)[0] == "verified"  # 90% fewer training errors
    assert judge(before, after, True, False, generalization=True)[0] == "refuted"
    # A changed loss changes what Keras' "accuracy" means: only the probe's hit rate compares.
    before, after = {"finite": True, "accuracy": 0.9, "hit_rate": 0.6}, {"finite": True, "accuracy": 0.6, "hit_rate": 0.9}
    assert judge(before, after, False, True)[0] == "verified"
    assert judge({"finite": True, "accuracy": 0.5}, {"finite": True, "accuracy": 0.9}, False, True)[0] == "refuted"
    assert judge({"finite": True, "loss_drop": 0.9, "loss_vs_chance": 1.0}, {"finite": True, "loss_drop": 0.1, "loss_vs_chance": 0.4}, False, True)[0] == "verified"
    assert judge({"finite": True, "loss_drop": 0.01}, {"finite": True, "loss_drop": 0.6}, True, False)[0] == "verified"


def test_counterfactual_runs_train_the_symptoms_epochs_plus_a_margin_within_the_cap():
    from deeplocalize.verify import rerun_epochs, truncated

    tb = TraceBuilder(["relu", "softmax"]).healthy(epochs=10)
    assert rerun_epochs(tb.trace, 20) == 12 and rerun_epochs(tb.trace, 11) == 11
    short = TraceBuilder(["relu", "softmax"])
    short.step(0, 2.0).step(0, float("nan"))
    assert rerun_epochs(short.trace, 20) == 2  # stopped inside epoch 1: one epoch, plus one
    cut = truncated(tb.trace, 4)
    assert len(cut.epochs) == 4 and {s.epoch for s in cut.steps} == {0, 1, 2, 3} and len(tb.trace.epochs) == 10


def test_a_silent_failure_stops_the_run_once_established_over_two_epochs():
    import deeplocalize.detectors as det

    tb = TraceBuilder(["relu", "relu", "softmax"])
    dead = [act(dead=1.0, nonpos=1.0, mean=0.0, std=0.0), act(), act()]
    rule = det.StopWhenDecisive()
    stopped_at = None
    for e in range(20):
        for s in range(10):
            tb.step(e, math.log(10), acts=dead)
            assert rule(tb.trace) is False
        tb.epoch(e, math.log(10), 0.1)
        if rule(tb.trace):
            stopped_at = e + 1
            break
    assert stopped_at == 6, stopped_at  # 5 = a quarter of the 20 epochs, confirmed at the next one
    assert "dead-relu" in rule.reason

    healthy = TraceBuilder(["relu", "relu", "softmax"]).healthy(epochs=20)
    rule = det.StopWhenDecisive()
    assert not any(rule(det_trace) for det_trace in [healthy.trace])
    assert det.silent_failure(healthy.trace) == set()


def test_a_loss_guard_comes_with_the_output_activation_when_the_output_is_no_probability():
    """Clipping alone would turn NaN into a meaningless negative cross-entropy while a relu
    output still emits values above 1: the activation comes in the same fix."""
    from deeplocalize.detectors.numerical import _loss_guard

    relu_head = TraceBuilder(["relu", "relu"]).trace
    spec = _loss_guard(relu_head)
    assert spec.change == Guard("probability") and "softmax" in spec.title
    (also,) = spec.also
    assert also.change == NewValue('"softmax"') and also.target == LayerArg(layer=1, arg="activation")

    softmax_head = TraceBuilder(["relu", "softmax"]).trace
    assert _loss_guard(softmax_head).change == Guard("probability") and not _loss_guard(softmax_head).also

    regression = TraceBuilder(["relu", None], units=[16, 1]).trace
    regression.fit.y = {"n": 1000, "min": -3.0, "max": 40.0, "integer_valued": False, "shape": [1000]}
    assert _loss_guard(regression).change == Guard("operand") and not _loss_guard(regression).also


def test_a_runtime_finding_is_streamed_once_it_holds_at_two_epoch_ends_past_its_window():
    from deeplocalize.engine import StreamedFindings
    from deeplocalize.trace import TraceEvent

    b = TraceBuilder(["relu", "softmax"])  # a 20-epoch fit: the window is 5 epochs
    streamed: list[list[str]] = []
    stream = StreamedFindings(lambda found: streamed.append([lf.finding.code for lf in found]))
    stream(TraceEvent("fit"), b.trace)
    first_at = None
    for e in range(8):
        for _ in range(10):
            b.step(e, math.log(10), acts=[act(dead=1.0, nonpos=1.0), act()])
        b.epoch(e, math.log(10), 0.1)
        stream(TraceEvent("epoch", epoch=e), b.trace)
        if streamed and first_at is None:
            first_at = e + 1
    assert streamed[0] == ["dead-relu"] and first_at == 6  # seen at epochs 5 and 6
    assert len(streamed) == 1  # once, not at every later epoch


def _full_batch_run(losses: list[float], epochs_requested: int, accuracy: float = 0.12, end: dict | None = None) -> TraceBuilder:
    """A full-batch fit (one step per epoch) of which the analysis saw `losses`."""
    tb = TraceBuilder(["relu", "softmax"])
    tb.trace.fit.steps_per_epoch, tb.trace.fit.epochs_requested, tb.trace.fit.epochs = 1, epochs_requested, len(losses)
    for e, l in enumerate(losses):
        tb.step(e, l)
        tb.epoch(e, l, accuracy)
    tb.trace.fit_end = end
    return tb


def test_a_fit_cut_by_the_analysis_while_its_loss_falls_steadily_is_not_blamed():
    """400 full-batch epochs asked, 20 seen by the epoch cap (or the time budget): the loss falls
    by 0.2% a step, so slowly that those 20 steps look flat, yet at that pace the script's own
    400 steps take it far down. Not a fault; the same curve from a fit that ended by itself after
    its 20 epochs is one (20 updates in all)."""
    falling = [2.30 * (1 - 0.002 * i) for i in range(20)]
    for end, stopped in (({"reason": "capped"}, None), (None, "timeout")):  # or the time budget stopped the process in the fit
        run = _full_batch_run(falling, 400, end=end)
        run.trace.end_reason = stopped
        assert not serious(diagnose(run.trace)), end
    stalled = serious(diagnose(_full_batch_run(falling, 20, end={"reason": "completed"}).trace))
    assert [f.code for f in stalled] == ["too-few-steps"]


def test_a_cut_fit_whose_loss_only_drifts_or_barely_moves_is_still_judged():
    rng = np.random.default_rng(0)
    drifting = list(2.30 - 0.0005 * np.arange(20) + rng.normal(0, 0.01, 20))  # noise over a faint trend
    assert [f.code for f in serious(diagnose(_full_batch_run(drifting, 400, end={"reason": "capped"}).trace))] == ["not-learning"]
    tiny_pace = [2.30 * (1 - 0.00002 * i) for i in range(20)]  # steady, but a tiny rate: still flat after 150 epochs
    assert [f.code for f in serious(diagnose(_full_batch_run(tiny_pace, 150, end={"reason": "capped"}).trace))] == ["not-learning"]


@pytest.mark.parametrize("epochs, pace", [(2, 400.0), (6, 100.0)], ids=["first-epochs", "steady-mid-fit"])
def test_a_regression_cut_while_its_loss_falls_is_not_judged_by_the_fraction_shed_so_far(epochs, pace):
    """The time budget stopped a healthy regression (large targets, 20 epochs of 17 steps asked)
    two epochs in, or six epochs in while the loss falls steadily, having shed a third of it.
    With no accuracy to judge, that fraction is the cut's; the same epochs ended by the script are not."""
    tb = TraceBuilder(["relu", None], units=[64, 1], loss="mse")
    tb.trace.fit.y.update({"min": 25.0, "max": 346.0, "integer_valued": False, "n_unique": 200, "mean": 152.0, "std": 77.0})
    tb.trace.fit.steps_per_epoch, tb.trace.fit.epochs_requested = 17, 20
    for e in range(epochs):
        for s in range(17):
            tb.step(e, 28000.0 - pace * (e * 17 + s) + (300.0 if s % 2 else -300.0))
        tb.epoch(e, 28000.0 - pace * (e * 17 + 16))
    tb.trace.end_reason = "timeout"
    assert not serious(diagnose(tb.trace))
    tb.trace.end_reason, tb.trace.fit_end = None, {"reason": "completed"}  # the same epochs, ended by the script itself
    tb.trace.fit.epochs_requested = tb.trace.fit.epochs = epochs
    assert serious(diagnose(tb.trace))


def test_a_slow_start_near_chance_loss_cut_by_the_budget_is_not_called_stalled():
    """A binary text classifier sheds 3% of its loss in the 4 of 10 epochs that the time budget
    let it train (a slow start that speeds up later: the whole fit reaches 20%); its accuracy
    is above chance. Kept up over the fit's own steps, its pace takes it out of a stall."""
    def run(epochs_seen: int, requested: int, pace: float) -> TraceBuilder:
        tb = TraceBuilder(["relu", "sigmoid"], units=[16, 1], loss="binary_crossentropy", n_classes=2)
        tb.trace.fit.y.update({"mean": 0.5, "n_unique": 2, "max": 1.0})
        tb.trace.fit.steps_per_epoch, tb.trace.fit.epochs_requested = 63, requested
        for e in range(epochs_seen):
            for s in range(63):
                g = e * 63 + s
                tb.step(e, 0.6931 - pace * g * g / 268 + (0.01 if s % 2 else -0.01))
            tb.epoch(e, 0.6931 - pace * (e * 63 + 62) ** 2 / 268, 0.62 + 0.02 * e)
        return tb

    cut = run(4, 10, 8e-5)
    cut.trace.end_reason = "timeout"
    assert not serious(diagnose(cut.trace))
    ended = run(4, 4, 8e-5)  # the same four epochs, all the script asked for: a fault of the script
    ended.trace.fit_end = {"reason": "completed"}
    assert [f.code for f in serious(diagnose(ended.trace))] == ["too-few-epochs"]


def test_a_smell_that_training_must_confirm_is_information_when_too_few_steps_were_seen():
    """XOR with a sigmoid and MSE (a healthy program) under a two-epoch cap: two full-batch steps."""
    tb = TraceBuilder(["relu", "sigmoid"], units=[8, 1], loss="mse", n_classes=2)
    tb.trace.fit.steps_per_epoch, tb.trace.fit.epochs_requested, tb.trace.fit.epochs = 1, 300, 2
    for e in range(2):
        tb.step(e, 0.26 - 0.01 * e)
        tb.epoch(e, 0.26 - 0.01 * e, 0.5)
    tb.trace.fit_end = {"reason": "capped"}
    smell = [f for f in diagnose(tb.trace) if f.code == "regression-loss-on-classes"]
    assert smell and smell[0].severity == "information"
    for e in range(2, 30):  # the same smell over a curve that stays poor (the fit ends by itself)
        tb.step(e, 0.25)
        tb.epoch(e, 0.25, 0.5)
    tb.trace.fit.epochs_requested = tb.trace.fit.epochs = 30
    tb.trace.fit_end = {"reason": "completed"}
    assert [f.severity for f in diagnose(tb.trace) if f.code == "regression-loss-on-classes"] == ["warning"]


def _stuck_at_the_prior(shares: list[float], accuracy: float) -> TraceBuilder:
    """A 3-class fit whose loss falls from a large start (raw inputs: large logits) to the entropy
    of the class prior and stays there, its accuracy flat: it learned the prior and nothing else."""
    tb = TraceBuilder(["relu", "softmax"], units=[16, 3], n_classes=3)
    tb.trace.fit.y["class_shares"] = shares
    prior = -sum(q * math.log(q) for q in shares)
    tb.trace.fit.steps_per_epoch, tb.trace.fit.epochs_requested, tb.trace.fit.epochs = 20, 10, 10
    for e in range(10):
        for s in range(20):
            tb.step(e, prior + 12.0 * math.exp(-(e * 20 + s) / 4.0))
        tb.epoch(e, prior + 12.0 * math.exp(-(e * 20 + 19) / 4.0), accuracy)
    tb.trace.fit_end = {"reason": "completed"}
    return tb


def test_a_classifier_held_at_the_majority_class_fails_though_its_loss_fell():
    """Issue 21, class 2: imbalanced classes, accuracy at the majority's share (0.6, far above 1/3)
    and the loss at the prior's entropy for the whole fit. Against 1/k and log k it looked like
    learning (a big fall from a large start); against guessing the prior it is a stall."""
    stuck = _stuck_at_the_prior([0.6, 0.25, 0.15], 0.6)
    p = measure(stuck.trace)
    assert p.chance_accuracy == 0.6 and p.fails and p.stalled
    assert "not-learning" in [f.code for f in serious(diagnose(stuck.trace))]
    # Accuracy 0.6 on balanced classes is far above guessing (1/3): not a failure.
    assert not measure(_stuck_at_the_prior([0.34, 0.33, 0.33], 0.6).trace).fails
    # Cut by the analysis after 10 of 40 epochs: ten epochs at the prior's loss are a stall and a failure
    # (what it shed from its huge start says nothing); after 5, a stall, too little to call it failed.
    cut = _stuck_at_the_prior([0.6, 0.25, 0.15], 0.6)
    cut.trace.fit.epochs_requested, cut.trace.fit_end = 40, {"reason": "capped"}
    assert measure(cut.trace).stalled and measure(cut.trace).fails
    cut.trace.epochs, cut.trace.steps = cut.trace.epochs[:5], [st for st in cut.trace.steps if st.epoch < 5]
    assert measure(cut.trace).stalled and not measure(cut.trace).fails


def test_labels_the_sparse_loss_rejected_in_a_dataset_batch_explain_the_crash():
    """Labels coded 1/2 on a two-unit softmax, fed through tf.data: fit never sees the labels as an
    array, but TensorFlow's error lists the batch it rejected; that is enough to name the mistake."""
    tb = TraceBuilder(["relu", "softmax"], units=[16, 2], n_classes=2)
    tb.trace.fit.y = None
    tb.trace.crash = CrashInfo("InvalidArgumentError", "Graph execution error:\n\nDetected at node ...\nReceived a label value of 2 which is "
                               "outside the valid range of [0, 2).  Label values: 2 2 1 2 1 1 2\n\t [[{{node compile_loss/...}}]]", [])
    codes = {f.code: f for f in diagnose(tb.trace)}
    assert codes["labels-off-by-one"].root_cause == "labels" and codes["training-crashed"].root_cause == "labels"
    tb.trace.crash = CrashInfo("InvalidArgumentError", "Received a label value of 7 which is outside the valid range of [0, 2).  Label values: 0 7 1", [])
    assert [f.code for f in diagnose(tb.trace) if f.code == "output-units-too-few"] == ["output-units-too-few"]


def test_a_rate_far_from_the_usual_gets_the_usual_rate_and_one_decade_as_candidates():
    """Adam at 0.1 keeps a linear regressor above its minimum; 0.001 trains it too slowly for the
    run's length, 0.01 heals it: the experiment gets both, the usual rate first."""
    from deeplocalize.detectors.causes import lr_target_and_fixes

    assert [f.change.text for f in lr_target_and_fixes(TraceBuilder(["relu", None], lr=0.1).trace, "down")[1]] == ["0.001", "0.01"]
    assert [f.change.text for f in lr_target_and_fixes(TraceBuilder(["relu", None], lr=0.005).trace, "down")[1]] == ["0.001"]
    assert [f.change.text for f in lr_target_and_fixes(TraceBuilder(["relu", None], lr=1e-6).trace, "up")[1]] == ["0.001", "1e-05"]


def test_ten_classes_at_sixteen_percent_with_the_loss_of_guessing_have_learned_nothing():
    """Labels sorted apart from their images: accuracy creeps from 0.10 to 0.16 while the loss stays
    at 0.97 of guessing. Five points above chance is too strict a bar on ten classes."""
    tb = TraceBuilder(["relu", "softmax"], units=[64, 10])
    tb.trace.fit.steps_per_epoch, tb.trace.fit.epochs_requested, tb.trace.fit.epochs = 24, 10, 10
    for e in range(10):
        for s in range(24):
            tb.step(e, 2.436 - 0.2 * (e * 24 + s) / 240)
        tb.epoch(e, 2.436 - 0.2 * (e + 1) / 10, 0.10 + 0.006 * (e + 1))
    tb.trace.fit_end = {"reason": "completed"}
    p = measure(tb.trace)
    assert p.stalled and p.fails
    assert "not-learning" in [f.code for f in serious(diagnose(tb.trace))]


def test_relu_units_dead_from_a_negative_starting_bias_are_blamed_on_that_bias():
    """bias_initializer=Constant(-3) on a ReLU layer: every unit starts dead and never gets a gradient.
    The bias is the first candidate, before the activation that would only treat the symptom."""
    dead = TraceBuilder(["relu", "softmax"], units=[128, 10])
    dead.layers[0].bias_initializer = {"class": "Constant", "config": {"value": -3.0}}
    for e in range(5):
        for s in range(10):
            dead.step(e, math.log(10), acts=[act(dead=1.0, nonpos=1.0), act()])
        dead.epoch(e, math.log(10), 0.1)
    found = [f for f in diagnose(dead.trace) if f.symptom == "dead_relu"][0]
    assert found.root_cause == "initialization" and found.target.arg == "bias_initializer"
    assert found.fixes[0].change == NewValue('"zeros"')


def test_a_smell_is_not_confirmed_by_a_fit_the_budget_cut_after_a_few_of_its_epochs():
    """Large regression targets: a warning only when training shows it fitting poorly. A fit the time
    budget stopped after 3 of its 20 epochs, its loss only partly shed so far, shows nothing about
    the script (the cut did that); the same curve over the whole fit does."""
    def unscaled(cut: bool) -> str:
        tb = TraceBuilder(["relu", None], units=[16, 1], loss="mse")
        tb.trace.fit.y = {"n": 400, "min": 50.0, "max": 346.0, "std": 77.0, "integer_valued": False, "n_unique": 300, "shape": [400, 1]}
        tb.trace.fit.epochs = tb.trace.fit.epochs_requested = 20 if cut else 3
        for e in range(3):  # a third of the loss shed in the first steps, then level and noisy
            for s in range(20):
                g = e * 20 + s
                tb.step(e, 26000.0 if g < 3 else 17000.0 + (1500.0 if g % 2 else -1500.0))
            tb.epoch(e, 20000.0 if e == 0 else 17000.0 + 300.0 * e)
        tb.trace.end_reason = "timeout" if cut else None
        tb.trace.fit_end = None if cut else {"reason": "completed"}
        return next(f.severity for f in diagnose(tb.trace) if f.code == "unscaled-targets")

    assert unscaled(cut=False) == "warning"
    assert unscaled(cut=True) == "information"
