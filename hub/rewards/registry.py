"""Connectors as configured for this hub, and the catalog sync that uses them."""
from __future__ import annotations

import logging

from hub.db import Database
from hub.rewards import catalog
from hub.rewards.providers import Provider, factories
from hub.settings import Settings

log = logging.getLogger(__name__)


def configured_providers(settings: Settings) -> dict[str, Provider]:
    """Every registered connector, each with its HUB_PROVIDER_<NAME>_* settings over its own
    defaults (which point at the local sandbox)."""
    return {name: factory(settings.providers.get(name, {})) for name, factory in factories().items()}


def sync_all(db: Database, providers: dict[str, Provider]) -> dict:
    """Pull every provider's catalog into rewards. One provider failing skips only itself."""
    report = {}
    for name, provider in providers.items():
        try:
            items = provider.catalog()
        except Exception as exc:  # a connector's catalog call can fail like any HTTP call
            log.warning("catalog sync of %s failed: %s", name, exc)
            report[name] = {"error": str(exc)}
            continue
        report[name] = db.write(lambda s: catalog.sync_provider(s, name, provider.kind.value, items))
    return report
