"""One settings schema (deeplocalize.settings.OPTIONS): the editor's settings, the CLI's flags,
package.json and the README all say the same thing, and bad values are handled as users expect."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deeplocalize.cli import build_parser
from deeplocalize.settings import OPTIONS, Settings

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ONLY = {"deeplocalize.trace.server"}  # read by vscode-languageclient itself, never by the server
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object"}


def _package_settings() -> dict[str, dict]:
    return json.loads((ROOT / "package.json").read_text())["contributes"]["configuration"]["properties"]


def test_every_editor_setting_in_package_json_is_the_schema_s():
    declared = _package_settings()
    schema = {f"deeplocalize.{o.key}": o for o in OPTIONS if o.key}
    assert set(declared) - CLIENT_ONLY == set(schema)
    for key, o in schema.items():
        d = declared[key]
        assert d["type"] == JSON_TYPES[o.kind], key
        assert d["default"] == o.default, key
        assert d.get("minimum") == o.minimum and d.get("maximum") == o.maximum, key
        assert tuple(d.get("enum", ())) == o.choices, key
        assert d["description"] == o.help, key


def test_the_settings_type_has_the_schema_s_fields_and_defaults():
    defaults = Settings()
    assert [f.name for f in dataclasses.fields(Settings)] == [o.field for o in OPTIONS]
    for o in OPTIONS:
        expected = None if o.field == "interpreter" else (None if o.none_at_zero and o.default == 0 else o.default)
        assert getattr(defaults, o.field) == expected, o.field


def test_the_cli_has_a_flag_for_each_option_that_has_one_with_its_default():
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for o in OPTIONS:
        if o.flag is None:
            continue
        for name, command in commands.items():
            by_flag = {s: a for a in command._actions for s in a.option_strings}
            if name not in o.commands:
                assert o.flag not in by_flag, (name, o.flag)
                continue
            assert o.flag in by_flag, (name, o.flag)
            action = by_flag[o.flag]
            if o.kind not in (bool, dict) and o.field != "interpreter":
                assert action.default == o.default and o.help in action.help, o.flag


def test_the_readme_names_every_setting_and_flag():
    readme = (ROOT / "README.md").read_text()
    for o in OPTIONS:
        if o.key:
            assert re.search(rf"`(deeplocalize\.)?{re.escape(o.key)}`", readme), o.key
        if o.flag:
            assert o.flag in readme, o.flag


def test_a_bad_editor_value_falls_back_and_a_bad_cli_value_is_an_error_naming_its_flag():
    s = Settings.from_json({"maxSeconds": 0.2, "maxEpochs": "x", "run": "always", "env": [1], "maxMemoryMb": 0, "workers": 99,
                            "verifyFixes": False, "interpreter": ""}, "/usr/bin/python3")
    assert (s.max_seconds, s.max_epochs, s.run, s.env, s.max_memory_mb, s.workers) == (60.0, 20, "onSave", {}, None, 8)
    assert s.verify_fixes is False and s.interpreter == "/usr/bin/python3"
    options = Settings.from_json({"maxEpochs": 0, "env": {"A": 1}}, None).run_options()
    assert options.max_epochs is None and options.env == {"A": "1"}
    for flag, value, said in (("--max-seconds", "0", "at least 1"), ("--verify-seconds", "0.5", "--no-verify"), ("--seed", "-2", "at least -1")):
        r = subprocess.run([sys.executable, "-m", "deeplocalize", "check", flag, value, "x.py"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and flag in r.stderr and said in r.stderr, r.stderr


@pytest.mark.parametrize("args, expected", [
    ([], {"max_seconds": 60.0, "max_epochs": 20, "seed": 0, "verify_fixes": True}),
    (["--max-epochs", "0", "--seed", "-1", "--no-verify", "--env", "A=b=c"], {"max_epochs": None, "seed": None, "verify_fixes": False, "env": {"A": "b=c"}}),
])
def test_cli_flags_become_the_same_settings_the_editor_would_use(args, expected):
    s = Settings.from_args(build_parser().parse_args(["check", *args, "x.py"]))
    assert {k: getattr(s, k) for k in expected} == expected
