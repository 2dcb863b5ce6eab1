"""The audit trail of privileged actions (hub/audit/trail.py), for ops."""
from hub.api.common import db, ok
from hub.audit import trail


def list_entries(token_info, action=None, actor=None, target=None, cursor=None, limit=50):
    with db().read() as s:
        rows, next_cursor = trail.entries(s, cursor=cursor, limit=limit, action=action, actor=actor, target=target)
        return ok({"items": [trail.view(e) for e in rows], "next_cursor": next_cursor})
