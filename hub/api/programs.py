from decimal import Decimal

from hub.api import views
from hub.api.common import created, db, ok
from hub.api.security import actor
from hub.programs import service


def create(body, token_info):
    def work(s):
        program = service.create_program(
            s,
            partner_code=body["partner"],
            code=body["code"],
            name=body["name"],
            point_value=Decimal(body["point_value"]),
            earn_currency=body["earn_rule"]["currency"],
            earn_rate=Decimal(body["earn_rule"]["points_per_unit"]),
        )
        return 201, views.program(program, body["partner"])

    return created(actor(token_info), body, work)


def list_(token_info, limit=50, cursor=None):
    with db().read() as s:
        rows, next_cursor = service.list_programs(s, actor(token_info), cursor, limit)
        return ok({"items": [views.program(p, code) for p, code in rows], "next_cursor": next_cursor})
