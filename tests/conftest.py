"""Shared helpers: repository paths and a builder for synthetic traces."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from pytest_lsp import ClientServerConfig, LanguageClient

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
sys.path.insert(0, str(ROOT / "server"))

from deeplocalize.trace import (  # noqa: E402
    FIELDS, CompileInfo, EpochRecord, FitInfo, Frame, LayerInfo, OptimizerInfo, StepRecord, Trace,
)


def act(mean=0.5, std=0.5, vmin=0.0, vmax=2.0, mean_abs=0.5, nonfinite=0.0, nonpos=0.5, dead=0.1, sat5=0.0) -> dict[str, float]:
    return dict(zip(FIELDS["out"], (mean, std, vmin, vmax, mean_abs, nonfinite, nonpos, dead, sat5)))


def grad(norm=0.1, nonfinite=0.0) -> dict[str, float]:
    return dict(zip(FIELDS["grad"], (norm, norm / 100, norm, nonfinite, 0.0)))


def weights(norm=5.0, kernel_std=0.1, fan_in=64.0, nonfinite=0.0) -> dict[str, float]:
    return dict(zip(FIELDS["w"], (norm, kernel_std, kernel_std, nonfinite, kernel_std, fan_in)))


class TraceBuilder:
    """Builds a Trace step by step, the way the probe would have reported it."""

    def __init__(self, activations: list[str | None], units: list[int] | None = None, loss: str = "sparse_categorical_crossentropy",
                 optimizer: str = "Adam", lr: float = 0.001, n_classes: int = 10) -> None:
        units = units or [32] * (len(activations) - 1) + [n_classes]
        frame = lambda line: Frame(file="/tmp/model.py", line=line, end_line=line, col=4, end_col=40)  # noqa: E731
        self.layers = [LayerInfo(index=i, name=f"dense_{i}", cls="Dense", activation=a, units=u, n_params=100,
                                 is_output=i == len(activations) - 1, site=[frame(10 + i)])
                       for i, (a, u) in enumerate(zip(activations, units))]
        opt = OptimizerInfo(cls=optimizer, learning_rate=lr, config={}, site=[frame(20)])
        x = {"n": 1000, "min": 0.0, "max": 1.0, "std": 0.3, "mean": 0.4, "nonfinite": 0.0}
        y = {"n": 1000, "min": 0.0, "max": float(n_classes - 1), "integer_valued": True, "n_unique": n_classes, "shape": [1000]}
        self.trace = Trace("/tmp/model.py", layers=self.layers, optimizer=opt,
                           compile=CompileInfo(site=[frame(21)], loss={"kind": "string", "name": loss}, optimizer=opt),
                           fit=FitInfo(site=[frame(22)], x=x, y=y, batch_size=32, batch_size_given=True, epochs_requested=20, epochs=20,
                                       steps_per_epoch=32, validation=False))

    def step(self, epoch: int, loss: float, acts: list[dict] | None = None, grads: list[float] | None = None,
             w: list[dict] | None = None, upd_ratio: float = 1e-3, pre: dict[int, dict] | None = None) -> "TraceBuilder":
        values: dict[str, dict[str, float]] = {"loss": {"loss": loss, "reg": 0.0}}
        for i, layer in enumerate(self.layers):
            values[f"L{i}.out"] = (acts[i] if acts else act())
            wi = (w[i] if w else weights())
            values[f"L{i}.w"] = wi
            values[f"L{i}.grad"] = grad(grads[i] if grads else 0.1)
            values[f"L{i}.upd"] = {"norm": wi["norm"] * upd_ratio}
        for i, p in (pre or {}).items():
            values[f"L{i}.pre"] = p
        g = len(self.trace.steps)
        self.trace.steps.append(StepRecord(epoch, g, g, values))
        return self

    def epoch(self, epoch: int, loss: float, accuracy: float | None = None) -> "TraceBuilder":
        logs: dict[str, Any] = {"loss": loss}
        if accuracy is not None:
            logs["accuracy"] = accuracy
        self.trace.epochs.append(EpochRecord(epoch, logs))
        return self

    def healthy(self, epochs: int = 10, steps: int = 10) -> "TraceBuilder":
        """A run whose loss falls from log(10) towards 0.2 and accuracy rises to 0.95."""
        for e in range(epochs):
            for s in range(steps):
                t = (e * steps + s) / (epochs * steps)
                self.step(e, math.log(10) * (1 - t) + 0.2 * t)
            self.epoch(e, math.log(10) * (1 - (e + 1) / epochs) + 0.2 * (e + 1) / epochs, 0.3 + 0.65 * (e + 1) / epochs)
        self.trace.fit_end = {"reason": "capped"}
        return self


# Longest first, so that the workers end together (see pytest addopts in pyproject.toml). xdist
# gives each worker one unit, then another to a worker with at most two tests pending, and so on as
# they free up: the real corpus and the fixtures (each a group of many tests) hold their workers
# alone, the third worker takes the tiny budgets, the editor test and the rest as they come.
LONGEST_FIRST = ("test_real_corpus.py", "test_fixtures.py", "test_tiny_budgets.py", "test_vscode_e2e.py", "test_distributed.py", "test_notebooks.py")


def pytest_collection_modifyitems(items: list) -> None:
    order = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: order.get(item.path.name, len(order)))


@pytest.fixture
def builder():
    return TraceBuilder


# As the probe names its processes: a training process at work, one waiting for a job, the fork server.
TRAINING_NAME, SPARE_NAME, FORKSERVER_NAME = "dl-training", "dl-spare", "dl-forkserver"
# Every process this test run starts (CLIs, servers, fork servers, training processes and whatever the
# scripts start) inherits this mark: "nothing left running" is checked on this run's processes only,
# whatever else the machine (or another test worker) runs meanwhile.
RUN_MARK = ("DEEPLOCALIZE_TEST_RUN", f"{os.getpid()}-{os.urandom(4).hex()}")
os.environ[RUN_MARK[0]] = RUN_MARK[1]


def ours_since(before: set[int]) -> list[str]:
    """This run's processes that did not exist before: a process of ours still running (or
    anything a training script started), described."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "name", "status", "cmdline"]):
        if p.pid in before or p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            marked = p.environ().get(RUN_MARK[0]) == RUN_MARK[1]
        except psutil.Error:
            marked = False
        if marked:
            out.append(f"{p.pid} {p.info['name']}: {' '.join(p.info['cmdline'] or [])[:80]}")
    return out


def running_jobs(session=None) -> list:
    """Live processes below this one other than the idle ones a session keeps (its fork
    servers and spare workers): a training process, or anything a script started."""
    import psutil

    idle = set(session.pids()) if session is not None else set()
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid not in idle and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


@pytest.fixture(scope="session")
def session():
    """One engine session for the whole test run: TensorFlow is imported once, by its fork
    server, and an analysis asked for twice with the same options (twin tests, the fixture
    and real-corpus modules) is run once."""
    import asyncio

    from deeplocalize.session import EngineSession

    engine = EngineSession(reuse=True)
    yield engine
    asyncio.run(engine.close())


# The language server over stdio, driven by a real LSP client (pytest-lsp); see lsp_helpers.py.
SERVER = ClientServerConfig(server_command=[sys.executable, "-m", "deeplocalize.server"],
                            server_env={**os.environ, "PYTHONPATH": str(ROOT / "server")})
EDITOR_SETTINGS = {"run": "onSave", "maxSeconds": 90, "maxEpochs": 20, "debounceMs": 200, "warmWorker": True}


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient):  # pytest-lsp hands the client over by this annotation
    from lsp_helpers import start_session

    await start_session(lsp_client, EDITOR_SETTINGS)
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=SERVER, scope="module")
async def editor(lsp_client: LanguageClient):
    """One server for a module whose tests each ask one feature of the same analyzed document
    (its tests run with `pytest.mark.asyncio(loop_scope="module")`)."""
    from lsp_helpers import start_session

    await start_session(lsp_client, EDITOR_SETTINGS)
    yield
    await lsp_client.shutdown_session()
