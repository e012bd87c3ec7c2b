"""What a sampled step's per-layer statistics cost as a model deepens, in one process, one run.

    python benchmarks/sampled_step_cost.py [--depths 4 8 16 32 64] [--reps 3] [--conv]

For MLPs of 4 to 64 Dense(128, relu) layers: the steady time of a plain train step, of a probed
step whose statistics are computed every step, and of a probed step that skips them (what a live
run's unsampled steps cost); and the probed step's first call (its tracing) against the plain
one's. Per layer, the sampled statistics' cost should stay flat (or fall) as layers are added: it
must not grow faster than the number of layers (issue 23). The machine is shared and noisy:
plain and probed runs alternate and the minimum of each is compared. `--conv` also times two
convolutional models, whose activations (and the ResNet50's weights) are large: the TensorFlow
tutorial's small CNN on 32x32x3 images and a ResNet50 (keras.applications, no weights) on 32x32
images, batch 32; their statistics read a strided sample of large tensors (probe/stats.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from deeplocalize.probe.channel import Channel  # noqa: E402
from deeplocalize.probe.hooks import Probe  # noqa: E402

WIDTH, BATCH, STEPS = 128, 64, 40


class _StepTimes(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_train_batch_begin(self, batch, logs=None) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.times.append(time.perf_counter() - self._t)


def _model(depth: int) -> keras.Model:
    layers = [keras.Input((WIDTH,))] + [keras.layers.Dense(WIDTH, activation="relu") for _ in range(depth)] + [keras.layers.Dense(10, activation="softmax")]
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _small_cnn() -> keras.Model:
    L = keras.layers
    model = keras.Sequential([keras.Input((32, 32, 3)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(), L.Conv2D(64, 3, activation="relu"),
                              L.MaxPooling2D(), L.Conv2D(64, 3, activation="relu"), L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def _resnet50() -> keras.Model:
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


CONV = {"small CNN": (_small_cnn, 40), "ResNet50": (_resnet50, 16)}  # model, steps timed


def _fit(depth: int | str, mode: str) -> tuple[float, float]:
    """(first step, steady step) in seconds; mode: plain, sampled (every step), unsampled (never).
    `depth`: the MLP's, or the name of a convolutional model (CONV)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    steps = CONV[depth][1] if isinstance(depth, str) else STEPS
    shape, batch = ((32, 32, 3), 32) if isinstance(depth, str) else ((WIDTH,), BATCH)
    x, y = rng.normal(size=(batch * steps, *shape)).astype("float32"), rng.integers(0, 10, batch * steps)
    probe = None
    if mode != "plain":
        probe = Probe(Channel(None), max_epochs=None, live=True)
        probe.install()
    try:
        model = CONV[depth][0]() if isinstance(depth, str) else _model(depth)
        if probe is not None:
            probe.sampling.first = steps * 10 if mode == "sampled" else 0
            probe.sampling.begin_fit = lambda steps: None  # keep the interval set here
            probe.sampling._set(10**9)
        times = _StepTimes()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[times])
    finally:
        if probe is not None:
            probe.uninstall()
    return times.times[0], float(np.median(times.times[steps // 2:]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--conv", action="store_true", help="also time a small CNN and a ResNet50")
    args = ap.parse_args()
    print(f"{'layers':>6s} {'plain ms':>9s} {'sampled ms':>10s} {'unsampled ms':>12s} {'extra/layer ms':>14s} {'sampled x':>9s} "
          f"{'unsampled x':>11s} {'first-step extra s':>18s}")
    per_layer = []
    for depth in args.depths:
        runs: dict[str, list[tuple[float, float]]] = {"plain": [], "sampled": [], "unsampled": []}
        for _ in range(args.reps):
            for mode in runs:
                runs[mode].append(_fit(depth, mode))
        first = {m: min(r[0] for r in rs) for m, rs in runs.items()}
        step = {m: min(r[1] for r in rs) for m, rs in runs.items()}
        layers = depth + 1
        extra = (step["sampled"] - step["plain"]) / layers
        per_layer.append(extra)
        print(f"{layers:6d} {step['plain'] * 1e3:9.2f} {step['sampled'] * 1e3:10.2f} {step['unsampled'] * 1e3:12.2f} {extra * 1e3:14.3f} "
              f"{step['sampled'] / step['plain']:8.2f}x {step['unsampled'] / step['plain']:10.2f}x {first['sampled'] - first['plain']:18.2f}",
              flush=True)
    if args.conv:
        print(f"\n{'model':>10s} {'plain ms':>9s} {'sampled ms':>10s} {'unsampled ms':>12s} {'sampled x':>9s} {'unsampled x':>11s}")
        for name in CONV:
            runs = {m: [_fit(name, m)[1] for _ in range(args.reps)] for m in ("plain", "sampled", "unsampled")}
            step = {m: min(r) for m, r in runs.items()}
            print(f"{name:>10s} {step['plain'] * 1e3:9.1f} {step['sampled'] * 1e3:10.1f} {step['unsampled'] * 1e3:12.1f} "
                  f"{step['sampled'] / step['plain']:8.2f}x {step['unsampled'] / step['plain']:10.2f}x", flush=True)
    growth = per_layer[-1] / per_layer[0] if per_layer[0] > 0 else float("nan")
    print(f"\nsampled statistics per layer: {per_layer[0] * 1e3:.3f} ms at {args.depths[0] + 1} layers, {per_layer[-1] * 1e3:.3f} ms at "
          f"{args.depths[-1] + 1} layers ({growth:.2f}x; <= about 1x: the cost grows no faster than the layers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
