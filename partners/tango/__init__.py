"""Tango Card RaaS v2: gift cards. Registers the "tango" connector."""
from hub.rewards.providers import register

from partners.tango.connector import TangoProvider

register(TangoProvider.name, TangoProvider)
