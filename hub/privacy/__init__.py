"""Member data protection (issue 7): encryption at rest with blind indexes, consent-gated
sharing between partners, export and erasure, and retention. No Flask here."""
