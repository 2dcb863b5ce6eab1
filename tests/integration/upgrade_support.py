"""An SQLite database migrated to an older revision, for the upgrade tests: rows are written
as that revision's schema holds them, then `hub.migrations.upgrade(url)` runs the rest."""
from __future__ import annotations

import pytest

from hub import migrations
from hub.privacy import keyring


@pytest.fixture
def old_database(settings, tmp_path, monkeypatch):
    """`old_database(revision) -> (path, url)`. The migrations seal with the hub's keys from
    the environment (the tests' secret key, no HUB_DATA_KEYS); the tests' keyring is put back
    afterwards."""
    monkeypatch.setattr(keyring, "_installed", keyring._installed)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    monkeypatch.delenv("HUB_DATA_KEYS", raising=False)

    def at(revision: str):
        path = tmp_path / "old.sqlite3"
        url = f"sqlite:///{path}"
        migrations.upgrade(url, revision)
        return path, url
    return at
