from hub.api.common import created
from hub.api.security import actor
from hub.errors import Invalid
from hub.identity import clients
from hub.identity.oidc import clients as brand_clients
from hub.programs import service

BRAND_FIELDS = ("redirect_uris", "post_logout_redirect_uris", "backchannel_logout_uri", "public")


def create(body, token_info):
    caller = actor(token_info)

    def work(s):
        if "role" in body and body.get("redirect_uris"):
            raise Invalid("a brand client signs members in: it takes no role", slug="invalid-role")
        partner = service.partner_by_code(s, body["partner"]) if body.get("partner") else None
        partner_id = partner.id if partner else None
        answer = {"name": body["name"], "partner": body.get("partner")}
        if body.get("redirect_uris"):
            client, secret = brand_clients.register(
                s, name=body["name"], partner_id=partner_id, redirect_uris=body["redirect_uris"],
                post_logout_redirect_uris=body.get("post_logout_redirect_uris", []),
                backchannel_logout_uri=body.get("backchannel_logout_uri"),
                public=body.get("public", False), scopes=body.get("scopes"), by=caller.ref)
            answer.update({k: body[k] for k in BRAND_FIELDS if k in body})
            answer.setdefault("public", False)
        elif any(k in body for k in BRAND_FIELDS):
            raise Invalid("a brand client's settings need redirect_uris",
                                        slug="invalid-client-metadata")
        else:
            client, secret = clients.create_client(s, name=body["name"], partner_id=partner_id,
                                                   scopes=body.get("scopes"), role=body.get("role"), by=caller.ref)
        answer.update(client_id=client.client_id, scopes=client.scopes.split(), role=body.get("role"))
        if secret:
            answer["client_secret"] = secret
        return 201, answer

    # The secret is shown once: a replay of this request answers without it.
    return created(caller, body, work, redact=("client_secret",))
