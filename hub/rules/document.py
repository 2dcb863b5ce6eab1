"""A program's rule document: its schema check (jsonschema, every error with its path) and
the checks a schema cannot express (overlapping or contradictory rules, unbounded awards),
which each section contributes as a linter.

The document is JSON, the same in the program's config file under partners/ and in the API.
Its schema is hub/rules/schemas/program-rules.json; each section has its own file under
schemas/sections/, so a section's schema sits next to no other.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from hub.errors import Invalid

_SCHEMAS = Path(__file__).resolve().parent / "schemas"


@dataclass(frozen=True)
class Finding:
    """A problem in a document: where (a JSON pointer) and what."""

    path: str
    message: str

    def as_dict(self) -> dict:
        return {"path": self.path, "message": self.message}


# A section's linter: the document -> what is wrong with it beyond its schema. Sections
# register theirs in _linters(); each looks only at its own section.
Linter = Callable[[dict], list[Finding]]


def _linters() -> tuple[Linter, ...]:
    from hub.rules import engagement, expiry, rating_lint, referrals, stamps, tiers
    return (rating_lint.lint_earning, rating_lint.lint_promotions, stamps.lint, referrals.lint, engagement.lint,
            tiers.lint, expiry.lint)


# A linter that compares a new document with the versions published before it (oldest
# first): what may not change once published.
HistoryLinter = Callable[[list[dict], dict], list[Finding]]


def _history_linters() -> tuple[HistoryLinter, ...]:
    from hub.rules import rating_lint
    return (rating_lint.lint_budget_changes,)


@functools.cache
def _validator() -> Draft202012Validator:
    resources = []
    for path in sorted(_SCHEMAS.rglob("*.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry = Registry().with_resources(resources)
    root = registry.contents("urn:hub:rules:program-rules")
    return Draft202012Validator(root, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _pointer(parts) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def findings(document, previous: list[dict] = ()) -> list[Finding]:
    """Everything wrong with `document`: schema errors first (then nothing else is checked,
    as linters may assume a well-formed document), else the linters' findings, then what it
    changes of the `previous` versions' documents that may not change."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        return [Finding(_pointer(e.absolute_path), e.message) for e in errors]
    unstorable = _nul_findings(document)
    if unstorable:
        return unstorable
    found = [finding for lint in _linters() for finding in lint(document)]
    return found + [finding for lint in _history_linters() for finding in lint(list(previous), document)]


def _nul_findings(value, path: tuple = ()) -> list[Finding]:
    """Text holding NUL, which JSON allows but PostgreSQL cannot store: refused, not a 500."""
    if isinstance(value, str):
        return [Finding(_pointer(path), "text cannot hold a NUL character")] if "\x00" in value else []
    if isinstance(value, list):
        return [f for i, item in enumerate(value) for f in _nul_findings(item, (*path, i))]
    if isinstance(value, dict):
        return [f for key, item in value.items() for f in (
            [Finding(_pointer((*path, key)), "a key cannot hold a NUL character")] if "\x00" in key
            else _nul_findings(item, (*path, key)))]
    return []


def check(document, previous: list[dict] = ()) -> dict:
    """`document` if it is a valid rule document (and, given the documents published before
    it, a valid next version); else Invalid (422, invalid-rules) naming each problem's path,
    the first in the detail."""
    found = findings(document, previous)
    if found:
        first = found[0]
        raise Invalid(
            f"{first.path}: {first.message}" + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""),
            slug="invalid-rules",
            errors=[f.as_dict() for f in found],
        )
    return document
