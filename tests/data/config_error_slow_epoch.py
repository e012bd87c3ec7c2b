"""A certain configuration error (relu output under categorical cross-entropy) whose first
epoch is long (one sample per step): used to test that the error is reported before training
ends, not after the epoch the final diagnosis waits for."""
import keras
from sklearn.datasets import load_digits

X, y = load_digits(return_X_y=True)
X = X / 16.0
y = keras.utils.to_categorical(y, 10)
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="relu")])
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
model.fit(X, y, epochs=20, batch_size=1, verbose=0)
