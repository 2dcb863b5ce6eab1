"""Tango Card RaaS v2: gift cards. Registers the "tango" connector and its report layout."""
from hub.rewards.providers import register, register_report

from partners.tango import report
from partners.tango.connector import TangoProvider

register(TangoProvider.name, TangoProvider)
register_report(TangoProvider.name, report.LAYOUT)
