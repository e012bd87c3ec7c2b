"""Labels drawn at random, apart from the inputs (a join on the wrong key, in real life): the model
can only learn the class prior, so it ends at the majority class's share. No change of layer,
step size or optimizer heals that: training fails and the cause is not in the model."""
import numpy as np
import keras

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(3000, 8)).astype("float32")
y = rng.choice(3, size=3000, p=[0.5, 0.3, 0.2])

model = keras.Sequential([
    keras.Input(shape=(8,)),
    keras.layers.Dense(8, activation="relu"),
    keras.layers.Dense(3, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=6, batch_size=64)
