"""The package's import structure: data flows one way (script -> runner -> probe events -> trace ->
detectors -> findings -> locations and fixes -> engine -> session -> CLI / language server), so a
module imports only modules of its own floor or below, and no modules import each other in a
circle. Read from the source (imports under `if TYPE_CHECKING:` are annotations, not imports)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "server" / "deeplocalize"

# Lowest first. A module's floor is that of its longest listed prefix.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("words", ("deeplocalize", "vocab")),
    ("probe (inside the training process)", ("probe", "keras")),
    ("scripts, traces and findings", ("trace", "findings", "rules", "source", "notebook", "strategies", "script", "edits", "feeds")),
    ("processes", ("forks", "processes", "training_process", "runner", "cluster")),
    ("detectors and locations", ("detectors", "anchors", "locate")),
    ("engine", ("report", "verify", "engine", "sarif", "report_html", "plots_svg", "settings", "run_folder")),
    ("session", ("session", "evaluation", "wholescript", "live")),
    ("front ends", ("cli", "lsp", "server", "monitor_sink", "launch", "__main__")),
]


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    typing_only = {id(x) for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
                   for b in n.body for x in ast.walk(b)}
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known and c != name}
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _floor(module: str) -> int:
    short = module.removeprefix("deeplocalize.") if module != "deeplocalize" else module
    best, floor = -1, None
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (short == p or short.startswith(p + ".")) and len(p) > best:
                best, floor = len(p), i
    assert floor is not None, f"{module} has no floor: add it to FLOORS"
    return floor


def test_no_module_imports_one_above_it_in_the_pipeline():
    upward = [f"{m} ({FLOORS[_floor(m)][0]}) imports {t} ({FLOORS[_floor(t)][0]})"
              for m, targets in _graph().items() for t in sorted(targets) if _floor(t) > _floor(m)]
    assert not upward, upward


def test_no_import_circle_in_the_package():
    graph = _graph()
    circles, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(node)

    for m in sorted(graph):
        if m not in done:
            visit(m, [m])
    assert not circles, circles


def test_every_event_the_probe_sends_is_a_kind_the_trace_knows():
    """The trace drops an event of an unknown kind (a newer probe): each kind the probe sends must be in
    vocab.EVENT_KINDS, or its events would be lost silently."""
    from deeplocalize.vocab import EVENT_KINDS

    sent = set()
    for f in (PACKAGE / "probe").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "send" and node.args
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                sent.add(node.args[0].value)
    assert {"ready", "compile", "fit", "model", "step", "epoch", "crash"} <= sent
    assert sent <= set(EVENT_KINDS), sent - set(EVENT_KINDS)
