"""A model that trains well although one ReLU branch is dead: its units all output 0,
but a skip connection carries the inputs to the classifier, and the branch's output is
zeroed anyway. The dead-ReLU rule fires;
re-training with the fix changes nothing, so the warning is not confirmed."""
import keras
from sklearn.datasets import load_digits

X, y = load_digits(return_X_y=True)
X = X / 16.0

inputs = keras.Input(shape=(64,))
branch = keras.layers.Dense(32, activation="relu", bias_initializer=keras.initializers.Constant(-50.0))(inputs)
branch = keras.layers.Lambda(lambda t: t * 0.0)(branch)  # what the branch computes never reaches the classifier
merged = keras.layers.Concatenate()([inputs, branch])
outputs = keras.layers.Dense(10, activation="softmax")(merged)
model = keras.Model(inputs, outputs)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(X, y, epochs=8, batch_size=32, verbose=0)
