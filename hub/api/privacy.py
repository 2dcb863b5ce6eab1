"""A member's data archive (hub/privacy/export.py): the member's own, or any member's for ops."""
import uuid

from flask import current_app

from hub.api.common import db
from hub.api.security import actor
from hub.privacy import export


def _zip(member_id: uuid.UUID, data: bytes):
    return current_app.response_class(data, mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="member-{member_id}.zip"', "Cache-Control": "no-store"})


def export_own(token_info):
    caller = actor(token_info)
    return _zip(caller.member_id, export.own_archive(db(), caller))


def export_member(member_id, token_info):
    member = uuid.UUID(member_id)
    return _zip(member, export.ops_archive(db(), member, actor(token_info).ref))
