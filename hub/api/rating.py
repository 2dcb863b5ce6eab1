"""Rule preview: POST /v1/programs/{code}/rules/preview."""
from hub.api.common import db, ok
from hub.api.security import actor
from hub.rules.preview import preview as rate_preview


def preview(code, body, token_info):
    with db().read() as s:
        return ok(rate_preview(s, actor(token_info), code, body).as_json())
