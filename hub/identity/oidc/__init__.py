"""The OpenID Connect provider: brand clients, authorization codes, ID/access/refresh tokens,
pairwise subjects, consent-aware userinfo and logout (no Flask here; hub/api/oauth.py is the
HTTP side, Authlib's AuthorizationServer runs the token endpoint)."""
