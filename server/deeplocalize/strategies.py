"""Which tf.distribute strategies the analysis supports, and what it says about the others.

Supported: the default (one device), OneDeviceStrategy, MirroredStrategy (the probe's
batch statistics are combined across replicas in the step) and MultiWorkerMirroredStrategy
(`--workers N` starts the cluster on this machine). Not supported, refused before anything
runs: TPUStrategy (no TPU here, and its steps run on the TPU host where the probe cannot
reach), ParameterServerStrategy (asynchronous training coordinated by a ClusterCoordinator:
there is no single step whose values could be compared across layers) and
CentralStorageStrategy (experimental, variables on one device, untested with the probe).
"""

from __future__ import annotations

import ast

from .rules import rule
from .source import Position, SourceRange, col_from_bytes

_NOT_TESTABLE = frozenset({"not_testable"})

UNSUPPORTED = {
    "TPUStrategy": "it trains on a TPU, whose steps the probe cannot reach",
    "ParameterServerStrategy": "its workers train asynchronously under a ClusterCoordinator, with no single step to compare layers in",
    "CentralStorageStrategy": "it is experimental and untested with the probe",
}

UNSUPPORTED_STRATEGY = rule(
    "unsupported-strategy", "run", "information", "unsupported-strategy",
    "The script trains under a tf.distribute strategy the analysis does not support (TPUStrategy, ParameterServerStrategy, "
    "CentralStorageStrategy); nothing was run.",
    details="Supported: one device, OneDeviceStrategy, MirroredStrategy and MultiWorkerMirroredStrategy (`--workers N`). "
            "Analyze the same model under MirroredStrategy or without a strategy to diagnose it.",
    traits=_NOT_TESTABLE)

KERAS_DISTRIBUTED_BUG = rule(
    "keras-distributed-bug", "run", "warning", "keras-distributed-bug",
    "Keras' own fit() fails under this strategy (a Keras bug, not a fault of the model): run as is, the script crashes here. "
    "The analysis fixed Keras in its training processes only, to see the training.",
    details="Keras 3 reduces the whole batch, and scalar logs along axis 0, across MultiWorkerMirroredStrategy workers "
            "(keras-team/keras#20585). Until Keras fixes it, train with a custom loop (`strategy.run`) or with MirroredStrategy "
            "on one machine.",
    traits=_NOT_TESTABLE)


def unsupported_strategy(text: str, path: str) -> tuple[str, SourceRange] | None:
    """The first unsupported strategy the script constructs, and where."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    lines = text.splitlines()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id if isinstance(node.func, ast.Name) else None
        if name in UNSUPPORTED:
            found.append((node.lineno, node.col_offset, name, node))
    if not found:
        return None
    line, col, name, node = min(found, key=lambda f: f[:2])
    end_line = node.end_lineno or line
    end_col = node.end_col_offset if node.end_col_offset is not None else col

    def column(at_line: int, byte_col: int) -> int:
        return col_from_bytes(lines[at_line - 1], byte_col) + 1 if 0 < at_line <= len(lines) else byte_col + 1

    return name, SourceRange(path, Position(line, column(line, col)), Position(end_line, column(end_line, end_col)))
