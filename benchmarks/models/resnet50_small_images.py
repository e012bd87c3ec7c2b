"""ResNet50 (keras.applications, no pretrained weights) on 32x32 random images, 10 classes: a deep
model (175 layers) for the whole-run overhead of `deeplocalize run` (benchmarks/live_overhead.py)."""
import numpy as np
import keras

rng = np.random.default_rng(0)
X = rng.random((256, 32, 32, 3), dtype=np.float32)
y = rng.integers(0, 10, size=256)
model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(X, y, epochs=3, batch_size=32, verbose=2)
