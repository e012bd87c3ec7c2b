"""Two suspects for a NaN: the first hidden layer starts with tiny weights (flagged first,
initialization comes first in the elimination order), but the step size of 5.0 is what
blows up. Re-training with the initializer fixed still diverges; with the rate lowered
it trains: the experiment corrects the first guess."""
import keras
from sklearn.datasets import load_digits

X, y = load_digits(return_X_y=True)
X = X / 16.0

model = keras.Sequential([
    keras.Input(shape=(64,)),
    keras.layers.Dense(64, activation="relu", kernel_initializer=keras.initializers.RandomNormal(stddev=0.001)),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=5.0), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(X, y, epochs=10, batch_size=32, verbose=0)
