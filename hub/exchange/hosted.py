"""The one interface a partner-hosted program's connector implements, and their registry.

A hosted program keeps its members' balances in the partner's own system (an airline's
miles): the hub holds no ledger balance for it and moves its points only through the
partner's API, shaped like the Points Loyalty Commerce Platform's partner-program API
(statuses success, failure, pending, systemError; retry; partial reversal).

Connectors live in partners/<name>/ and register themselves; hub/ never imports one by name.
A connector never raises for an HTTP outcome: every answer, or the lack of one, maps to a
`RemoteResult`, because the conversion saga's safety depends on telling "surely not applied"
(compensate the local leg) from "maybe applied" (ask the partner before anything else) and
"applied" (post the local leg). A debit is never sent again blindly: after an UNKNOWN the saga
asks `status(reference)` first and re-sends only when the partner has no record of it.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol


class RemoteStatus(str, enum.Enum):
    SUCCESS = "success"      # applied: the partner moved the points
    PENDING = "pending"      # accepted, not settled yet: ask status() again later
    FAILURE = "failure"      # definitively not applied (refused, insufficient balance, ...)
    UNKNOWN = "unknown"      # may or may not be applied (systemError, timeout, 5xx): ask status()
    RETRY = "retry"          # debit/credit/reversal only: surely not applied, may succeed later
                             # (refused connection, 429). status() answers UNKNOWN instead: a
                             # question that did not get through proves nothing.
    NOT_FOUND = "not_found"  # status() only: the partner has no transaction with this reference


@dataclass(frozen=True)
class RemoteResult:
    status: RemoteStatus
    transaction_id: str | None = None  # the partner's id of the transaction, when it gave one
    detail: str = ""
    retry_after: float | None = None   # seconds, when the partner said


@dataclass(frozen=True)
class MemberCheck:
    """Member validation: whether the partner knows the member, and their balance."""

    valid: bool
    balance: int | None = None
    detail: str = ""


class HostedUnavailable(Exception):
    """validate() got no usable answer (timeout, 5xx, refused connection)."""


class HostedProgram(Protocol):
    name: str  # registry key, e.g. "lcp"

    def validate(self, member_id: str) -> MemberCheck:
        """Whether `member_id` (the partner's own member number) exists, and their balance.
        Raises HostedUnavailable when the partner does not answer."""

    def debit(self, member_id: str, points: int, reference: str) -> RemoteResult:
        """Take `points` from the member. `reference` is ours, unique per leg: the partner
        applies one reference at most once."""

    def credit(self, member_id: str, points: int, reference: str) -> RemoteResult:
        """Give `points` to the member (same reference rule)."""

    def status(self, reference: str) -> RemoteResult:
        """What became of the debit or credit sent with `reference` (NOT_FOUND: never
        received). A transaction the partner left in systemError is retried by the partner's
        own retry operation (same transaction, never a new one)."""

    def reversal(self, transaction_id: str, points: int, reference: str) -> RemoteResult:
        """Undo `points` of an applied transaction (partial allowed; the partner refuses a
        cumulative reversal above the original)."""


# name -> factory(config) -> HostedProgram. Config: HUB_PROVIDER_<NAME>_* over the connector's
# defaults (the local sandbox), as for reward providers.
_REGISTRY: dict[str, Callable[[Mapping[str, str]], HostedProgram]] = {}


def register(name: str, factory: Callable[[Mapping[str, str]], HostedProgram]) -> None:
    _REGISTRY[name] = factory


def factories() -> dict[str, Callable[[Mapping[str, str]], HostedProgram]]:
    from hub.rewards.providers import _load_plugins

    _load_plugins()
    return dict(_REGISTRY)


def configured(provider_config: Mapping[str, Mapping[str, str]]) -> dict[str, HostedProgram]:
    """Every registered connector, each with its HUB_PROVIDER_<NAME>_* settings (the hub's
    `Settings.providers`) over its own defaults."""
    return {name: factory(provider_config.get(name, {})) for name, factory in factories().items()}
