"""API clients, signing keys and access tokens (no Flask here)."""
