"""`from deeplocalize.keras import Monitor`: diagnose a training that `deeplocalize run` cannot
launch (a Jupyter kernel, a larger program, a job scheduler) with a Keras callback:

    model.fit(x, y, epochs=50, callbacks=[Monitor()])

Import it before the model is built, so that findings point at the lines that make its layers
(see probe/monitor.py).
"""

from __future__ import annotations

from .probe.monitor import Monitor, install

install()

__all__ = ["Monitor"]
