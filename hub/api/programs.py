from decimal import Decimal

from hub.api import runtime, views
from hub.api.common import created, db, ok
from hub.api.security import actor
from hub.errors import Invalid
from hub.programs import service


def create(body, token_info):
    hosted_by = body.get("hosted_by")
    caller = actor(token_info)

    def work(s):
        if hosted_by is not None and hosted_by not in runtime.current().hosted:
            raise Invalid(f"no hosted-program connector {hosted_by!r} is configured", slug="unknown-connector")
        program = service.create_program(
            s,
            partner_code=body["partner"],
            code=body["code"],
            name=body["name"],
            point_value=Decimal(body["point_value"]),
            earn_currency=body["earn_rule"]["currency"],
            earn_rate=Decimal(body["earn_rule"]["points_per_unit"]),
            hosted_by=hosted_by,
            by=caller.ref,
        )
        return 201, views.program(program, body["partner"])

    return created(caller, body, work)


def list_(token_info, limit=50, cursor=None):
    with db().read() as s:
        rows, next_cursor = service.list_programs(s, actor(token_info), cursor, limit)
        return ok({"items": [views.program(p, code) for p, code in rows], "next_cursor": next_cursor})
