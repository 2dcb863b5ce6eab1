"""Roles (hub/identity/roles.py) in the API, by enumeration of the spec: an ops_analyst reads
everything ops read and changes nothing; a partner_admin reaches its own partner only and no
ops operation. Clients get their role from `hub clients create --role` or POST /v1/clients."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hub.audit.models import AuditEntry
from hub.cli import main
from hub.identity import roles
from tests.conftest import Api, assert_problem, token_for
from tests.integration.settlement_support import SEEDED_PERIOD
from tests.integration.test_audit_coverage import CALLS, World, operations

ANALYST_ONLY_CALLS = {  # ops:write operations CALLS does not make (not audited: see EXEMPT there)
    "hub.api.segments.refresh": lambda w, api: api.post(f"/v1/segments/{w.segment}/refresh?partner={w.a.code}"),
    "hub.api.settlement.close": lambda w, api: api.post(f"/v1/settlement/periods/{SEEDED_PERIOD}/close"),
}


@pytest.fixture(scope="module")
def world(ops, http, db) -> World:
    return World(ops, http, db)


def client_with_role(world, role: str, partner: str | None = None) -> tuple[Api, str]:
    created = world.ops.post("/v1/clients", {"name": role, "role": role, **({"partner": partner} if partner else {})})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["role"] == role and set(body["scopes"]) == roles.SCOPES[role]
    return Api(world.http, token_for(world.http, body["client_id"], body["client_secret"])), body["client_id"]


@pytest.fixture(scope="module")
def analyst(world):
    return client_with_role(world, roles.OPS_ANALYST)


@pytest.fixture(scope="module")
def partner_admin(world):
    """Partner B's admin: partner A's objects are not theirs."""
    return client_with_role(world, roles.PARTNER_ADMIN, world.b.code)[0]


def ops_writes() -> list[str]:
    return sorted(op for op, (_, _, scopes) in operations().items() if "ops:write" in scopes)


def ops_reads() -> list[str]:
    return sorted(op for op, (method, _, scopes) in operations().items() if method == "GET" and "ops:read" in scopes)


def entries_by(db, client_id: str) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.actor == f"client:{client_id}"))


def test_every_ops_write_has_a_call():
    assert set(ops_writes()) <= set(CALLS) | set(ANALYST_ONLY_CALLS)


@pytest.mark.parametrize("operation", ops_writes())
def test_an_analyst_changes_nothing(world, db, analyst, operation):
    api, client_id = analyst
    call = CALLS[operation][1] if operation in CALLS else ANALYST_ONLY_CALLS[operation]
    assert_problem(call(world, api), 403, "insufficient-scope")
    # Every audited change records its caller in its own transaction (test_audit_coverage.py).
    assert entries_by(db, client_id) == 0


@pytest.mark.parametrize("operation", ops_reads())
def test_an_analyst_reads_what_ops_read(world, analyst, operation):
    api, _ = analyst
    _, path, _ = operations()[operation]
    params = {"partner": world.a.code} if path.startswith("/segments") else {}
    response = api.get("/v1" + world.path(path), **params)
    assert response.status_code == 200, (path, response.text)


def ops_only() -> list[str]:
    return sorted(op for op, (_, _, scopes) in operations().items()
                  if scopes and all(s.startswith("ops:") for s in scopes))


@pytest.mark.parametrize("operation", ops_only())
def test_a_partner_admin_calls_no_ops_operation(world, partner_admin, operation):
    method, path, _ = operations()[operation]
    response = world.http.request(method, "/v1" + world.path(path), headers=partner_admin.headers,
                                  **({} if method in ("GET", "DELETE") else {"json": {}}))
    assert_problem(response, 403, "insufficient-scope")


@pytest.mark.parametrize("path", [
    "/v1/webhook-endpoints/{endpoint_id}", "/v1/webhook-endpoints/{endpoint_id}/deliveries",
    "/v1/member-transfers/{transfer_id}", "/v1/programs/{code}/rules", "/v1/programs/{code}/rules/versions",
    "/v1/segments/{code}",
])
def test_a_partner_admin_does_not_see_another_partners_objects(world, partner_admin, path):
    path = "/v1" + world.path(path.removeprefix("/v1"))
    response = partner_admin.get(path)
    assert response.status_code == 404, (path, response.text)
    assert world.a.api.get(path).status_code == 200  # it exists: A sees it


@pytest.mark.parametrize("body, problem", [
    ({"role": "partner_admin"}, "the role partner_admin needs a partner"),
    ({"role": "ops_analyst", "partner": "{partner}"}, "the role ops_analyst has no partner"),
    ({"role": "ops_analyst", "scopes": ["ops:write"]}, "the role ops_analyst cannot have ops:write"),
    ({"role": "partner_admin", "partner": "{partner}", "scopes": ["ops:read"]},
     "the role partner_admin cannot have ops:read"),
    ({"role": "ops_admin", "redirect_uris": ["https://brand.example/cb"]}, "a brand client signs members in"),
])
def test_a_role_sets_scopes_and_refuses_what_it_does_not_allow(world, db, body, problem):
    body = {k: (v.replace("{partner}", world.a.code) if isinstance(v, str) else v) for k, v in body.items()}
    refused = world.ops.post("/v1/clients", {"name": "x", **body})
    assert refused.status_code == 422 and problem in refused.json()["detail"], refused.text


def test_scopes_narrow_a_role(world):
    created = world.ops.post("/v1/clients", {"name": "reader", "role": "partner_admin", "partner": world.a.code,
                                             "scopes": ["webhooks:read"]})
    assert created.status_code == 201 and created.json()["scopes"] == ["webhooks:read"]


@pytest.fixture
def run(settings, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    return lambda *args: CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_command_line_gives_roles(world, run):
    for role, partner in ((roles.OPS_ADMIN, None), (roles.OPS_ANALYST, None), (roles.PARTNER_ADMIN, world.a.code)):
        result = run("clients", "create", "--name", role, "--role", role, "--json",
                     *(("--partner", partner) if partner else ()))
        assert result.exit_code == 0, result.output
        created = json.loads(result.output)
        assert created["role"] == role and set(created["scopes"]) == roles.SCOPES[role]
    refused = run("clients", "create", "--name", "x", "--role", roles.PARTNER_ADMIN)
    assert refused.exit_code == 1 and "needs a partner" in refused.output
    listed = run("audit", "list", "--action", "client.create", "--actor", "cli", "--limit", "3", "--json")
    assert [json.loads(line)["after"]["role"] for line in listed.output.splitlines()] == [
        roles.PARTNER_ADMIN, roles.OPS_ANALYST, roles.OPS_ADMIN]
