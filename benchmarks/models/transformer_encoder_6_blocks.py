"""A 6-block Transformer encoder (multi-head attention, feed-forward, layer norms, residuals) that
classifies random token sequences: for the whole-run overhead of `deeplocalize run`
(benchmarks/live_overhead.py)."""
import numpy as np
import keras
from keras import layers

VOCAB, LENGTH, WIDTH, HEADS, BLOCKS = 2000, 64, 64, 4, 6
rng = np.random.default_rng(0)
X = rng.integers(0, VOCAB, size=(1024, LENGTH))
y = (X[:, 0] % 2).astype("int32")


def block(x):
    attended = layers.MultiHeadAttention(num_heads=HEADS, key_dim=WIDTH // HEADS)(x, x)
    x = layers.LayerNormalization()(x + attended)
    hidden = layers.Dense(WIDTH * 2, activation="relu")(x)
    return layers.LayerNormalization()(x + layers.Dense(WIDTH)(hidden))


inputs = keras.Input((LENGTH,))
x = layers.Embedding(VOCAB, WIDTH)(inputs)
for _ in range(BLOCKS):
    x = block(x)
outputs = layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling1D()(x))
model = keras.Model(inputs, outputs)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(X, y, epochs=4, batch_size=32, verbose=2)
