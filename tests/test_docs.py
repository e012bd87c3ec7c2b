"""Every diagnostic code the engine can emit is explained in docs/diagnostics.md
(the language server links each diagnostic there)."""

from __future__ import annotations

import ast
import re

from conftest import ROOT

EMITTERS = {"Finding", "_info", "add"}


def emitted_codes() -> set[str]:
    codes = set()
    for path in (ROOT / "server" / "deeplocalize").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                if name in EMITTERS and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", node.args[0].value):
                    codes.add(node.args[0].value)
    return codes


def test_every_code_has_a_section():
    docs = (ROOT / "docs" / "diagnostics.md").read_text()
    documented = set(re.findall(r"^### ([a-z0-9-]+)$", docs, re.M))  # one heading per code: exact anchors
    codes = emitted_codes()
    assert len(codes) > 30
    assert codes <= documented, sorted(codes - documented)
