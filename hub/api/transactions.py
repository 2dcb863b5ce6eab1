"""Purchases, batches of purchases and returns.

`purchase` and `batch` are connexion's (Flask) handlers; `post_purchase` and `post_batch` are
what they do, without Flask, so that the lean ASGI path (hub/api/lean.py) runs the very same
code for these two hot operations.
"""
import uuid

from hub.api import problems, spec, views
from hub.api.common import Call, Reply, create, created, db, flask_call, flask_reply, ok
from hub.api.security import actor
from hub.errors import BadRequest
from hub.programs import earning


def purchase(body, token_info):
    return flask_reply(post_purchase(flask_call(), body, token_info))


def batch(body, token_info):
    return flask_reply(post_batch(flask_call(), body, token_info))


def post_purchase(call: Call, body: dict, token_info: dict) -> Reply:
    caller = actor(token_info)

    def work(s):
        result = earning.earn(s, caller, [(0, body)])[0]
        if result.error:
            raise result.error
        return (201 if result.status == "created" else 200), views.transaction(result.view)

    return create(call, caller, body, work)


def post_batch(call: Call, body: dict, token_info: dict) -> Reply:
    caller = actor(token_info)
    items = body["items"]

    def work(s):
        results = {}
        valid = []
        for index, item in enumerate(items):
            error = spec.first_error("Purchase", item)
            if error:
                results[index] = {"index": index, "status": "failed", "problem": _problem(BadRequest(error))}
            else:
                valid.append((index, item))
        for index, r in earning.earn(s, caller, valid).items():
            entry = {"index": index, "status": r.status}
            if r.error:
                entry["problem"] = _problem(r.error)
            else:
                entry["transaction"] = views.transaction(r.view)
            results[index] = entry
        ordered = [results[i] for i in range(len(items))]
        counts = {k: sum(1 for r in ordered if r["status"] == k) for k in ("created", "duplicate", "failed")}
        return 200, {"created": counts["created"], "duplicates": counts["duplicate"],
                     "failed": counts["failed"], "results": ordered}

    return create(call, caller, body, work)


def _problem(exc) -> dict:
    return problems.body(exc.status, exc.slug, exc.title, exc.detail)


def get(transaction_id, token_info):
    with db().read() as s:
        view = earning.get(s, actor(token_info), uuid.UUID(transaction_id))
        return ok(views.transaction(view))


def return_(body, token_info):
    caller = actor(token_info)

    def work(s):
        is_new, view = earning.reverse(s, caller, body)
        return (201 if is_new else 200), views.transaction(view)

    return created(caller, body, work)
