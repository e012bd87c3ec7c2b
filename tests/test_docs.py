"""Every diagnostic the engine can emit is declared once as a rule and explained in the
diagnostics reference that ships inside the package (the language server links each
diagnostic there, installed or editable)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

from conftest import ROOT
from deeplocalize import rules
from deeplocalize.vocab import ROOT_CAUSES


def test_the_reference_is_generated_from_the_rules_and_up_to_date():
    registry = rules.all_rules()
    assert len(registry) > 40
    docs = rules.docs_path().read_text()
    assert rules.updated_docs(docs, registry) == docs, "run: python -m deeplocalize.rules --write"
    documented = re.findall(r"^### ([a-z0-9-]+)$", docs, re.M)  # one heading per code: exact anchors
    assert sorted(documented) == sorted(registry)
    for r in registry.values():
        assert "{" not in r.text(r.summary).replace("{0, 1}", ""), r.code  # every threshold placeholder is filled in
        assert all(c is None or c in ROOT_CAUSES for c in r.causes)


def test_no_finding_is_made_outside_a_rule():
    """A code written as a string literal at a call site is how codes used to drift from the docs."""
    made = []
    for path in (ROOT / "server" / "deeplocalize").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Finding" and path.name != "rules.py":
                made.append(f"{path.name}:{node.lineno}")
    assert made == [], made  # only Rule.finding builds them


def test_the_command_reports_stale_docs(tmp_path, monkeypatch):
    stale = tmp_path / "diagnostics.md"
    stale.write_text(rules.docs_path().read_text().replace("### nan-inf\n", "### nan-inf\nEdited by hand.\n"))
    monkeypatch.setattr(rules, "docs_path", lambda: stale)
    assert rules.main(["--check"]) == 1
    assert rules.main(["--write"]) == 0 and rules.main(["--check"]) == 0
    assert "Edited by hand" not in stale.read_text()


def test_documentation_links_resolve_from_a_regular_install(tmp_path):
    """Not editable: the package is copied to site-packages, the source tree is not there."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    probe = ("import sys; from deeplocalize.lsp.convert import docs_href; from pygls.uris import to_fs_path; "
             "href = docs_href('nan-inf'); path, anchor = href.split('#'); text = open(to_fs_path(path)).read(); "
             "print(path); assert '### ' + anchor in text, href")
    out = subprocess.run([sys.executable, "-c", probe], env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert str(target) in out.stdout and str(ROOT) not in out.stdout
