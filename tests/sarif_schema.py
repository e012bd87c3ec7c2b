"""Validation against the official SARIF 2.1.0 schema (tests/data/sarif, origin in its README)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

_SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif" / "sarif-2.1.0.json").read_text())
_VALIDATOR = jsonschema.Draft202012Validator(_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def sarif_errors(doc: dict) -> list[str]:
    """Every place where `doc` breaks the schema (empty when it is valid SARIF 2.1.0)."""
    json.loads(json.dumps(doc, allow_nan=False))  # plain JSON: no NaN, no objects
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in _VALIDATOR.iter_errors(doc)]
