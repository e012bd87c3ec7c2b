"""Training time with the probe vs without, same models, same process, one run.

    python benchmarks/probe_overhead.py [--reps 5] [--epochs 5]

Prints per-model min-of-reps times and the ratio probed/plain (target <= 1.3x), on one
device and under tf.distribute.MirroredStrategy on two logical CPUs (where the probe also
combines its batch statistics across replicas: target, the single-device ratio + 10%).
The machine is shared and noisy: runs alternate plain/probed and the minimum
of each is compared, so only the ratios are meaningful.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

import numpy as np  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from deeplocalize.probe.channel import Channel  # noqa: E402
from deeplocalize.probe.hooks import AnalysisDone, Probe  # noqa: E402


def mlp() -> keras.Model:
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])


def cnn() -> keras.Model:
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(16, 3, activation="relu", padding="same"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu", padding="same"), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax"),
    ])


class _EpochTimes(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.times.append(time.perf_counter() - self._t)


def train(build, X, y, epochs: int, batch: int, probe: Probe | None, strategy: tf.distribute.Strategy) -> tuple[float, float]:
    """(whole fit with graph tracing, as a user pays it; fastest epoch after the first, steady state)."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if probe is not None:
        probe.install()
        probe.reset()
    timer = _EpochTimes()
    t = time.perf_counter()
    try:
        model.fit(X, y, epochs=epochs, batch_size=batch, verbose=0, callbacks=[timer])
    except AnalysisDone:
        pass
    elapsed = time.perf_counter() - t
    if probe is not None:
        probe.uninstall()
    return elapsed, min(timer.times[1:] or timer.times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    digits = load_digits()
    X = (digits.data / 16.0).astype("float32")
    Xi = X.reshape(-1, 8, 8, 1)
    y = digits.target
    # Two logical CPUs before anything initializes the runtime: MirroredStrategy's replicas.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategies = {"one device": tf.distribute.get_strategy(), "mirrored x2": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])}
    probe = Probe(Channel(None), max_epochs=None)
    models = {"mlp (bs 32)": (mlp, X, 32), "cnn (bs 32)": (cnn, Xi, 32), "mlp (bs 128)": (mlp, X, 128)}
    gm = lambda r: float(np.exp(np.mean(np.log(r))))  # noqa: E731
    summary = {}
    for where, strategy in strategies.items():
        whole_ratios, steady_ratios = [], []
        for name, (build, data, batch) in models.items():
            plain, probed = [], []
            for _ in range(args.reps):
                plain.append(train(build, data, y, args.epochs, batch, None, strategy))
                probed.append(train(build, data, y, args.epochs, batch, probe, strategy))
            whole = min(p[0] for p in probed) / min(p[0] for p in plain)
            steady = min(p[1] for p in probed) / min(p[1] for p in plain)
            whole_ratios.append(whole)
            steady_ratios.append(steady)
            print(f"{where:11s} {name:14s} whole fit: plain {min(p[0] for p in plain):6.3f} s probed {min(p[0] for p in probed):6.3f} s "
                  f"ratio {whole:.2f}x | steady epoch: plain {min(p[1] for p in plain):6.3f} s probed {min(p[1] for p in probed):6.3f} s "
                  f"ratio {steady:.2f}x", flush=True)
        summary[where] = (gm(whole_ratios), gm(steady_ratios))
    for where, (whole, steady) in summary.items():
        print(f"{where:11s} geometric mean ratio: whole fit {whole:.2f}x, steady state {steady:.2f}x")
    one, mirrored = summary["one device"], summary["mirrored x2"]
    print(f"mirrored vs one device: whole fit {mirrored[0] - one[0]:+.2f}, steady state {mirrored[1] - one[1]:+.2f} "
          "(targets: one device <= 1.30x; mirrored <= one device + 0.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
