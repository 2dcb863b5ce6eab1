"""Tremendous API v2: gift cards (and other payouts). Registers the "tremendous" connector and its report layout."""
from hub.rewards.providers import register, register_report

from partners.tremendous import report
from partners.tremendous.connector import TremendousProvider

register(TremendousProvider.name, TremendousProvider)
register_report(TremendousProvider.name, report.LAYOUT)
