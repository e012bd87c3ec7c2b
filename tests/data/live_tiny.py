"""A small healthy training run for `deeplocalize run`'s tests: its own arguments say how many
epochs, whether to crash after training (at the line marked CRASH) and what to exit with."""
import argparse
import sys
import time

import keras
import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--crash", action="store_true")
parser.add_argument("--exit", type=int, default=0)
parser.add_argument("--epoch-seconds", type=float, default=0.0)
args = parser.parse_args()

rng = np.random.default_rng(0)
X = rng.normal(size=(512, 8)).astype("float32")
y = (X[:, 0] + X[:, 1] > 0).astype("int32")
model = keras.Sequential([keras.Input(shape=(8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
slow = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: time.sleep(args.epoch_seconds))
model.fit(X, y, epochs=args.epochs, batch_size=32, verbose=2, callbacks=[slow])
print("trained", flush=True)
if args.crash:
    raise RuntimeError("the evaluation data is missing")  # CRASH
sys.exit(args.exit)
