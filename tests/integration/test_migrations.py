"""The schema the migrations build is the one the models declare: a model change without its
migration (or a migration that drifts from its model) fails here, on both dialects."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import hub.models  # noqa: F401  (registers every table on Base.metadata)
from hub.db import Base


def test_migrated_schema_matches_the_models(settings):
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
