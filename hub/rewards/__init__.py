"""Rewards: the catalog, redemption orders and their relay to external providers."""
