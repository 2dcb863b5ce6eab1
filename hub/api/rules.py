"""Program rules (hub/rules/admin.py) and surprise rewards (hub/rules/surprises.py)."""
from hub.api import views
from hub.api.common import created, db, ok
from hub.api.security import actor
from hub.programs.earning import parse_time
from hub.rules import admin, surprises


def publish(code, body, token_info):
    caller = actor(token_info)
    effective_from = body.get("effective_from")
    when = parse_time(effective_from, "effective_from", past_only=False) if effective_from else None
    return created(caller, body, lambda s: (
        201, views.rule_version(admin.publish(s, caller, code, body["document"], when))))


def current(code, token_info):
    with db().read() as s:
        in_force, scheduled = admin.current(s, actor(token_info), code)
    return ok({"program": code, "in_force": views.rule_version(in_force) if in_force else None,
               "scheduled": [views.rule_version(v) for v in scheduled]})


def list_versions(code, token_info, cursor=None, limit=50):
    with db().read() as s:
        items, next_cursor = admin.list_versions(s, actor(token_info), code, cursor, limit)
    return ok({"items": [views.rule_version(v) for v in items], "next_cursor": next_cursor})


def get_version(code, version, token_info):
    with db().read() as s:
        return ok(views.rule_version(admin.get_version(s, actor(token_info), code, version)))


def check(code, body, token_info):
    with db().read() as s:  # another partner's program is a 404
        found = admin.check(s, actor(token_info), code, body["document"])
    return ok({"valid": not found, "findings": [f.as_dict() for f in found]})


def surprise(code, body, token_info):
    caller = actor(token_info)

    def work(s):
        granted, view = surprises.grant(s, caller, code, body["member"], body["points"], body["reason"],
                                        body["surprise_id"])
        return 201 if granted else 200, views.surprise(view)

    return created(caller, body, work)
