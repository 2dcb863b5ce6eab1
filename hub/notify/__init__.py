"""The transactional outbox (and, later, outgoing webhooks)."""
