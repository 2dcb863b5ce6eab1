from hub import money
from hub.api import runtime
from hub.api.common import created, db, ok
from hub.api.security import actor
from hub.api.views import ts
from hub.db import utcnow
from hub.rewards import catalog


def list_(token_info, kind=None, program=None, provider=None, available=True, cursor=None, limit=50):
    rates = runtime.current().settings.unit_rates
    with db().read() as s:
        views, next_cursor = catalog.list_rewards(
            s, actor(token_info), rates, kind=kind, program_code=program, provider=provider,
            available=available, cursor=cursor, limit=limit,
        )
        return ok({"items": [reward(v) for v in views], "next_cursor": next_cursor})


def create(body, token_info):
    caller = actor(token_info)

    def work(s):
        made, program_code = catalog.create_reward(s, caller, body)
        return 201, reward(catalog.RewardView(made, program_code, None, []))

    return created(caller, body, work)


def reward(v: catalog.RewardView) -> dict:
    r = v.reward
    if r.program_id is not None:
        price = {"program": v.program_code, "points": r.price_points}
    elif r.price_units is not None:
        price = {"units": format(r.price_units, "f")}
    else:
        price = {}  # provider rewards: their face value, see denominations and quotes
    out = {
        "id": str(r.id),
        "code": r.code,
        "kind": r.kind,
        "name": r.name,
        "description": r.description,
        "price": price,
        "provider": r.provider,
        "currency": r.currency,
        "denominations": [money.to_major(d, r.currency) for d in r.denominations or []],
        "range": None,
        "tier": r.tier,
        "min_tier": r.min_tier,
        "stock": r.stock,
        "per_member_limit": r.per_member_limit,
        "available_from": ts(r.available_from) if r.available_from else None,
        "available_until": ts(r.available_until) if r.available_until else None,
        "available": catalog.available_now(r, utcnow()),
    }
    if r.min_minor is not None:
        out["range"] = {"min": money.to_major(r.min_minor, r.currency),
                        "max": money.to_major(r.max_minor, r.currency) if r.max_minor else None}
    if v.quote_program is not None:
        out["quotes"] = [
            {"program": v.quote_program.code, "points": points,
             "amount": money.to_major(face, r.currency) if face is not None else None}
            for face, points in v.quotes
        ]
    return out
