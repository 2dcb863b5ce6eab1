"""Benchmark of the OpenID provider: complete authorization-code exchanges (GET /oauth/authorize
with a logged-in browser session -> code -> POST /oauth/token with PKCE and client secret ->
ID token, access and refresh tokens) per second, and RFC 7662 introspections per second.

    .venv/bin/python bench/sso.py [--database-url URL] [--clients 16] [--seconds 15] [--workers 2]

Like bench/earn.py: it makes its own database (dropped at the end, also on failure), sets up a
partner, a confidential brand client, a member account logged in (login session cookie) who
already consented, starts `hub serve` on PostgreSQL, drives it from threads in this process,
and prints one JSON line on stdout (progress on stderr). Only loopback traffic.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from earn import DEFAULT_URL, Databases, Server, free_port, install_keyring, log

REDIRECT_URI = "https://brand.example/cb"
SCOPE = "openid email offline_access me:read"


def setup(url: str) -> dict:
    """Schema, a partner, its brand client, a member logged in who consented (services)."""
    from hub import migrations
    from hub.db import Database, utcnow
    from hub.identity import consent, login
    from hub.identity.account_models import MemberAccount
    from hub.identity.oidc import clients as brand_clients
    from hub.programs import service
    from hub.programs.models import Member

    migrations.upgrade(url)
    db = Database(url, 2)
    install_keyring(db)
    try:
        def work(s):
            code = f"S{secrets.token_hex(3).upper()}"
            partner = service.create_partner(s, code, "Bench brand", by="bench")
            client, secret = brand_clients.register(
                s, name="bench brand site", partner_id=partner.id, redirect_uris=[REDIRECT_URI],
                scopes=SCOPE.split(), by="bench")
            member = Member()
            s.add(member)
            s.flush()
            account = MemberAccount(member_id=member.id, email="bench@example.com",
                                    password_hash="not used by the benchmark",
                                    email_verified_at=utcnow())  # unverified accounts may not sign in to brands
            s.add(account)
            s.flush()
            _, cookie = login.start(s, account, ("pwd",), ttl=timedelta(hours=1))
            consent.grant(s, member.id, str(partner.id), SCOPE.split(), ["email", "email_verified"])
            return {"client_id": client.client_id, "secret": secret, "cookie": cookie}

        return db.write(work)
    finally:
        db.dispose()


def sign_in(http: requests.Session, base: str, cfg: dict) -> dict | None:
    """One complete authorization code flow: the token response, or None if any step failed."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(8)
    answer = http.get(f"{base}/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": cfg["client_id"], "redirect_uri": REDIRECT_URI,
        "scope": SCOPE, "state": state, "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge, "code_challenge_method": "S256"}),
        cookies={"hub_login": cfg["cookie"]}, allow_redirects=False, timeout=30)
    if answer.status_code != 302:
        return None
    params = parse_qs(urlsplit(answer.headers["Location"]).query)
    if params.get("state") != [state] or "code" not in params:
        return None
    token = http.post(f"{base}/oauth/token", data={
        "grant_type": "authorization_code", "code": params["code"][0], "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier}, auth=(cfg["client_id"], cfg["secret"]), timeout=30)
    return token.json() if token.status_code == 200 and "id_token" in token.json() else None


def code_flow(http: requests.Session, base: str, cfg: dict) -> bool:
    return sign_in(http, base, cfg) is not None


def introspection(http: requests.Session, base: str, cfg: dict) -> bool:
    answer = http.post(f"{base}/oauth/introspect", data={"token": cfg["access_token"]},
                       auth=(cfg["client_id"], cfg["secret"]), timeout=30)
    return answer.status_code == 200 and answer.json().get("active") is True


def drive(step, base: str, cfg: dict, clients: int, seconds: float) -> dict:
    """`clients` threads repeat `step` for `seconds`: completions per second, failures."""
    done, failed = [0] * clients, [0] * clients
    deadline = time.monotonic() + seconds

    def loop(i):
        with requests.Session() as http:
            while time.monotonic() < deadline:
                if step(http, base, cfg):
                    done[i] += 1
                else:
                    failed[i] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {"per_second": round(sum(done) / elapsed, 1), "completed": sum(done), "failed": sum(failed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    dbs = Databases(args.database_url)
    server = None
    try:
        url = dbs.create(f"hub_bench_sso_{secrets.token_hex(4)}")
        cfg = setup(url)
        port = free_port()
        logdir = Path(tempfile.mkdtemp(prefix="hub-bench-sso-"))
        server = Server(url, port, args.workers, logdir)
        server.wait_ready()
        base = f"http://127.0.0.1:{port}"
        with requests.Session() as http:
            first = sign_in(http, base, cfg)
        if first is None:
            raise RuntimeError(f"a code flow failed before the run; see {server.log_path}")
        cfg["access_token"] = first["access_token"]
        log(f"code flows: {args.clients} clients for {args.seconds} s")
        flows = drive(code_flow, base, cfg, args.clients, args.seconds)
        log(f"introspections: {args.clients} clients for {args.seconds} s")
        introspections = drive(introspection, base, cfg, args.clients, args.seconds)
        print(json.dumps({
            "benchmark": "sso", "database": "postgresql", "workers": args.workers,
            "clients": args.clients, "seconds": args.seconds,
            "code_flows_per_second": flows["per_second"], "code_flows": flows,
            "introspections_per_second": introspections["per_second"], "introspections": introspections,
        }))
        return 0 if not flows["failed"] and not introspections["failed"] else 1
    finally:
        if server is not None:
            server.stop()
        dbs.drop_all()


if __name__ == "__main__":
    sys.exit(main())
