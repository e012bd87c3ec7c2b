"""The probe inside a real training process (slow)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import psutil
import pytest

from conftest import FIXTURES, running_jobs
from deeplocalize.runner import RunOptions, WorkerPool, run_one
from deeplocalize.script import describe
from lsp_helpers import until

pytestmark = pytest.mark.slow

SCRIPT = '''
import sys
import numpy as np
{imports}
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
X = rng.normal(size=(256, 6)).astype("float32")
y = (X[:, 0] + X[:, 1] > 0).astype("int64")
{model}
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
print("before fit")
sys.stderr.write("to stderr\\n")
hist = model.fit(X, y, epochs=3, batch_size=32, verbose=0)
print("user output", repr(hist.history["loss"][-1]))
'''

STYLES = {
    "sequential": ("import keras", "model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation='relu'), keras.layers.Dense(2, activation='softmax')])"),
    "tf.keras": ("import tensorflow as tf\nkeras = tf.keras", "model = tf.keras.Sequential([tf.keras.layers.Dense(8, activation='relu'), tf.keras.layers.Dense(2, activation='softmax')])"),
    "functional": ("from tensorflow import keras", "i = keras.Input((6,))\nh = keras.layers.Dense(8, activation='relu')(i)\nmodel = keras.Model(i, keras.layers.Dense(2, activation='softmax')(h))"),
    "subclassed": ("import keras\nfrom keras.layers import Dense", textwrap.dedent('''
        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.a = Dense(8, activation='relu')
                self.b = Dense(2, activation='softmax')
            def call(self, x):
                return self.b(self.a(x))
        model = Net()''')),
}


@pytest.mark.parametrize("style", list(STYLES))
def test_probe_sees_every_layer_without_changing_training(tmp_path, style, session):
    imports, model = STYLES[style]
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(imports=imports, model=model))
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    plain_loss = float(plain.stdout.split("user output")[1])

    result = asyncio.run(session.run(str(script), RunOptions(max_epochs=None, seed=None)))
    trace = result.trace
    assert [l.cls for l in trace.layers] == ["Dense", "Dense"]
    assert [l.activation for l in trace.layers] == ["relu", "softmax"]
    lines = script.read_text().splitlines()
    for layer in trace.layers:  # each layer maps to the line that constructs it
        assert "Dense(" in lines[layer.site[0].line - 1]
    assert len(trace.epochs) == 3 and len(trace.steps) == 3 * 8
    probed_loss = trace.epochs[-1].logs["loss"]
    assert probed_loss == pytest.approx(plain_loss, rel=1e-5)  # same training, same result
    # per-step statistics are real numbers for every layer on sampled steps
    first = trace.steps[0].values
    assert {"L0.out", "L0.pre", "L0.grad", "L0.w", "L0.upd", "L1.out", "loss"} <= set(first)
    assert first["L0.w"]["fan_in"] == 6 and 0 < first["L0.grad"]["norm"] < 100
    if style in ("sequential", "functional"):  # built before fit: its initial weights are read before any update
        assert sorted(trace.initial_kernels) == [0, 1] and trace.initial_kernels[0][1] == 6
    # the user's stdout/stderr arrive as output, events stay on the private channel
    assert "before fit" in result.output and "to stderr" in result.output
    assert not any(line.startswith("{") for line in result.output)


def test_recorded_gradient_norm_matches_a_gradient_tape(tmp_path, session):
    script = tmp_path / "tape.py"
    script.write_text(textwrap.dedent('''
        import numpy as np, tensorflow as tf, keras
        keras.utils.set_random_seed(1)
        X = np.random.default_rng(1).normal(size=(32, 4)).astype("float32")
        y = (X[:, 0] > 0).astype("float32")
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh"), keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="binary_crossentropy")
        with tf.GradientTape() as tape:
            loss = keras.losses.binary_crossentropy(y[:, None], model(X)).numpy().mean() * 0 + tf.reduce_mean(keras.losses.binary_crossentropy(y[:, None], model(X)))
        grads = tape.gradient(loss, model.trainable_weights)
        print("TAPE", float(np.sqrt(sum(float(tf.reduce_sum(g * g)) for g in grads[:2]))))
        model.fit(X, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
    '''))
    result = asyncio.run(session.run(str(script), RunOptions(seed=None)))
    tape_norm = float(next(l for l in result.output if l.startswith("TAPE")).split()[1])
    assert result.trace.steps[0].values["L0.grad"]["norm"] == pytest.approx(tape_norm, rel=1e-4)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_weights_and_updates_of_sampled_steps_are_the_real_ones(tmp_path, session, policy):
    """Long epochs are sampled (every few steps): the weights are then read before the update
    only on sampled steps. Their statistics must be those of the weights the step started from
    and of the update it made, as a callback reading the layer around each batch sees them; under
    mixed precision (a loss-scale optimizer) too, with gradients of the loss, not of the scaled loss."""
    script = tmp_path / "sampled.py"
    script.write_text(textwrap.dedent('''
        import numpy as np, keras
        keras.mixed_precision.set_global_policy("%s")
        keras.utils.set_random_seed(2)
        rng = np.random.default_rng(2)
        X = rng.normal(size=(2048, 6)).astype("float32")
        y = (X[:, 0] - X[:, 2] > 0).astype("int64")
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(2, activation="softmax", dtype="float32")])
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")

        class Around(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                self.before = np.concatenate([w.ravel() for w in model.layers[0].get_weights()])
            def on_train_batch_end(self, batch, logs=None):
                after = np.concatenate([w.ravel() for w in model.layers[0].get_weights()])
                print("AROUND", float(np.linalg.norm(self.before)), float(np.linalg.norm(after - self.before)))

        model.fit(X, y, epochs=2, batch_size=32, verbose=0, callbacks=[Around()])
    ''' % policy))
    result = asyncio.run(session.run(str(script), RunOptions(seed=None)))
    around = [tuple(map(float, l.split()[1:])) for l in result.output if l.startswith("AROUND")]
    assert len(around) == 2 * 64 == len(result.trace.steps)
    assert all("loss" in s.values and "hit" in s.values for s in result.trace.steps)  # every step's own statistics
    sampled = [s for s in result.trace.steps if "L0.w" in s.values]
    assert 20 < len(sampled) < len(around) / 2, len(sampled)  # the first steps, then a sample
    for s in sampled:
        w_norm, upd_norm = around[s.g]
        assert s.values["L0.w"]["norm"] == pytest.approx(w_norm, rel=1e-5), s.g
        assert s.values["L0.upd"]["norm"] == pytest.approx(upd_norm, rel=1e-4, abs=1e-7), s.g
        assert 0 < s.values["L0.grad"]["norm"] < 10 and s.values["L0.grad"]["nonfinite"] == 0, s.g


@pytest.mark.parametrize("fork_server", [True, False], ids=["forked", "fresh interpreter"])
def test_cancelling_a_run_kills_its_process(session, fork_server):
    async def go():
        started: list[int] = []
        task = asyncio.ensure_future(session.run(str(FIXTURES / "robustness/infinite_loop.py"), RunOptions(max_seconds=60, fork_server=fork_server),
                                                 on_event=lambda e, t: started.append(e.pid) if e.kind == "ready" else None))
        for _ in range(300):
            await asyncio.sleep(0.1)
            if started and psutil.Process(started[0]).cpu_percent(0.2) > 50:  # in the script's loop
                break
        assert started and psutil.pid_exists(started[0])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return started[0]

    pid = asyncio.run(go())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not running_jobs(session)


def test_a_forked_worker_skips_the_tensorflow_import(tmp_path, session):
    script = tmp_path / "quick.py"
    script.write_text("import keras\nprint('hi')\n")

    async def go():
        await session.ready()  # the fork server has imported TensorFlow
        t = asyncio.get_running_loop().time()
        result = await session.run(str(script))
        forked = asyncio.get_running_loop().time() - t
        cold_t = asyncio.get_running_loop().time()
        await session.run(str(script), RunOptions(fork_server=False))
        cold = asyncio.get_running_loop().time() - cold_t
        return result, forked, cold

    result, forked, cold = asyncio.run(go())
    assert result.output == ["hi"]
    assert forked < cold / 2  # ratio, not an absolute time


def test_taking_a_warm_worker_starts_its_successor_at_once(tmp_path, session):
    """A save right after a run also finds a worker ready: the pool refills when a worker is
    taken, not when the run ends; and it never keeps more idle workers than allowed."""
    script = describe(str(tmp_path / "quick.py"), "import keras\nprint('hi')\n")

    async def go():
        pool = WorkerPool(refill=True, max_spares=1, forks=session.pool.forks)
        try:
            await pool.ready(RunOptions())
            first = pool.pids()
            task = asyncio.ensure_future(run_one(script, RunOptions(), pool))
            for _ in range(100):  # the successor appears while the first run is still going
                await asyncio.sleep(0.1)
                if pool.pids() and pool.pids() != first:
                    break
            successor = pool.pids()
            await task
            await pool.prewarm(RunOptions(env={"OTHER": "1"}))  # another key: the older spare is stopped
            return first, successor, pool.pids()
        finally:
            await pool.aclose(servers=False)

    first, successor, after = asyncio.run(go())
    assert successor and successor != first
    assert len(after) == 1 and after != successor


def test_analyses_that_wait_for_a_ready_worker_at_once_each_get_their_events(tmp_path, session):
    """Two analyses at once that each first wait for a spare (the editor's steady state, as the
    benchmarks start each one) may wait on the same spare while one of them takes it: the
    spare's first event is read once, so every run keeps its events and none is mistaken for
    an interpreter that cannot import TensorFlow."""
    script = describe(str(tmp_path / "fit.py"), textwrap.dedent("""\
        import numpy as np, keras
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(np.zeros((8, 4)), np.zeros(8), epochs=1, verbose=0)
        print("done")
        """))

    async def go():
        pool = WorkerPool(forks=session.pool.forks)

        async def analysis():
            results = []
            for _ in range(3):
                assert await pool.ready(RunOptions())
                results.append(await run_one(script, RunOptions(), pool))
            return results

        try:
            return [r for rs in await asyncio.gather(analysis(), analysis()) for r in rs]
        finally:
            await pool.aclose(servers=False)

    results = asyncio.run(go())
    assert [(r.status, r.lost, r.output[-1:]) for r in results] == [("finished", False, ["done"])] * 6
    assert all(r.trace.versions and r.trace.steps for r in results)


def test_draining_the_pool_also_stops_a_start_scheduled_during_the_run(tmp_path, session):
    """With warm workers off, no process outlives the run: a spare whose start was scheduled
    while the run went on (the next experiment's) is stopped too, not left idle, and the fork
    server with it."""
    script = describe(str(tmp_path / "quick.py"), "print('hi')\n")

    async def go():
        pool = WorkerPool(refill=False)
        try:
            await run_one(script, RunOptions(), pool, keep_warm=True)
            pool.prewarm_soon(RunOptions())  # scheduled, not yet started, when the run ends
            await pool.drain(servers=True)
            await pool.settled()  # a start in flight has landed, and was stopped, by now
            await until(lambda: not running_jobs(session), 15, "every stopped process to be gone (none left idle)")
            return pool.pids(), pool.forks.pids()
        finally:
            await pool.aclose()

    pids, servers = asyncio.run(go())
    assert pids == [] and servers == []


def test_recurrent_and_wrapper_layers_train_unchanged_under_the_probe(tmp_path, session):
    """RNN layers expose `activation` as a read-only property; Bidirectional owns no variables itself."""
    script = tmp_path / "rnn.py"
    script.write_text(textwrap.dedent('''
        import numpy as np, keras
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        X = rng.integers(0, 50, size=(128, 12)); y = (X.mean(axis=1) > 25).astype("int64")
        model = keras.Sequential([keras.Input((12,)), keras.layers.Embedding(50, 8),
                                  keras.layers.Bidirectional(keras.layers.LSTM(8, return_sequences=True)),
                                  keras.layers.GRU(4), keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        hist = model.fit(X, y, epochs=2, batch_size=32, verbose=0)
        print("user output", repr(hist.history["loss"][-1]))
    '''))
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    result = asyncio.run(session.run(str(script), RunOptions(max_epochs=None, seed=None)))
    assert result.status == "finished" and result.trace.crash is None and not result.trace.probe_errors
    assert result.trace.epochs[-1].logs["loss"] == pytest.approx(float(plain.stdout.split("user output")[1]), rel=1e-5)
    owners = {l.cls for l in result.trace.trainable_layers}
    assert "Bidirectional" not in owners and "Embedding" in owners


def test_progress_bars_reach_the_user_as_clean_final_lines(tmp_path, session):
    script = tmp_path / "bar.py"
    script.write_text(textwrap.dedent('''
        import numpy as np, keras
        X = np.random.rand(640, 3).astype("float32"); y = X.sum(axis=1)
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
        m.compile(optimizer="adam", loss="mse")
        m.fit(X, y, epochs=2, verbose=1)
    '''))
    out = asyncio.run(session.run(str(script))).output
    assert [l for l in out if l.startswith("Epoch")] == ["Epoch 1/2", "Epoch 2/2"]
    bars = [l for l in out if l.startswith("20/20")]
    assert len(bars) == 2 and all("\x1b" not in l and "loss:" in l for l in bars)
