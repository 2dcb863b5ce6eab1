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


@cache
def validator(schema_name: str) -> Draft4Validator:
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": document()["components"]}
    return Draft4Validator(root, format_checker=Draft4Validator.FORMAT_CHECKER)


def first_error(schema_name: str, instance) -> str | None:
    """A readable description of the first way `instance` breaks the schema, or None."""
    error = next(iter(validator(schema_name).iter_errors(instance)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message} (at {where})" if where else error.message
