"""Tremendous API v2: gift cards (and other payouts). Registers the "tremendous" connector."""
from hub.rewards.providers import register

from partners.tremendous.connector import TremendousProvider

register(TremendousProvider.name, TremendousProvider)
