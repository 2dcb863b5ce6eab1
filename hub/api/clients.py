from hub.api.common import created
from hub.api.security import actor
from hub.identity import clients
from hub.programs import service


def create(body, token_info):
    def work(s):
        partner = service.partner_by_code(s, body["partner"]) if body.get("partner") else None
        client, secret = clients.create_client(
            s, name=body["name"], partner_id=partner.id if partner else None, scopes=body.get("scopes")
        )
        return 201, {
            "client_id": client.client_id,
            "client_secret": secret,
            "name": client.name,
            "partner": body.get("partner"),
            "scopes": client.scopes.split(),
        }

    # The secret is shown once: a replay of this request answers without it.
    return created(actor(token_info), body, work, redact=("client_secret",))
