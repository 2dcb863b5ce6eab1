"""Cross-cutting protections of every response and log line (issue 7, item 6; docs/security.md):
security headers (headers.py) and the redaction of secrets in logs (redaction.py). Rate limits
are hub/identity/ratelimit.py; CSRF is hub/web/session.py."""
