"""A live run with a late fault for the editor's tests: a schedule raises the rate at epoch 4
(NaN soon after), and the run goes on for many short epochs, so it is still training when the
editor shows the finding."""
import time

import keras
import numpy as np

rng = np.random.default_rng(0)
X = rng.normal(size=(256, 8)).astype("float32")
y = (X @ rng.normal(size=(8, 1))).astype("float32")
model = keras.Sequential([keras.Input(shape=(8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="mse")


def warm_restart(epoch, lr):
    if epoch == 4:
        return lr * 1e6  # FAULT
    return lr


pause = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: time.sleep(0.25))
model.fit(X, y, epochs=120, batch_size=32, verbose=0, callbacks=[keras.callbacks.LearningRateScheduler(warm_restart), pause])
