"""A member's data archive (hub/privacy/export.py): the member's own, or any member's for ops."""
import uuid

from flask import current_app

from hub.api.common import db
from hub.api.security import actor
from hub.privacy import export


def _zip(member_id: uuid.UUID):
    data = export.archive(db(), member_id)
    return current_app.response_class(data, mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="member-{member_id}.zip"', "Cache-Control": "no-store"})


def export_own(token_info):
    return _zip(actor(token_info).member_id)


def export_member(member_id, token_info):
    return _zip(uuid.UUID(member_id))
