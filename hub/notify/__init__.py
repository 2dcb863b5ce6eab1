"""The transactional outbox, and partner webhooks delivered through it."""
