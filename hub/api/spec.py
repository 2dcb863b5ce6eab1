"""The OpenAPI document, and validators for its schemas where connexion does not apply them
(each item of a batch is validated on its own, so one bad item does not sink the rest)."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from jsonschema import Draft4Validator

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi" / "hub.yaml"


@cache
def document() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def _inline_refs(node, document: dict, seen: tuple = ()):
    """`node` with every local $ref replaced by what it points to. Draft 4 ignores the
    siblings of a $ref, so the whole node is replaced. The spec's schemas do not recurse."""
    if isinstance(node, dict):
        if "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/") or ref in seen:
                raise ValueError(f"cannot inline {ref}")
            target = document
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return _inline_refs(target, document, (*seen, ref))
        return {key: _inline_refs(value, document, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_refs(value, document, seen) for value in node]
    return node


@cache
def validator(schema_name: str) -> Draft4Validator:
    """The schema with its $refs inlined: resolving them through jsonschema's `referencing`
    on every call was half the CPU of validating a 1000-item batch."""
    schema = _inline_refs(document()["components"]["schemas"][schema_name], document())
    return Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)


def first_error(schema_name: str, instance) -> str | None:
    """A readable description of the first way `instance` breaks the schema, or None."""
    error = next(iter(validator(schema_name).iter_errors(instance)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message} (at {where})" if where else error.message
