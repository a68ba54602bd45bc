"""Upgrade-from-empty gives exactly the schema the code declares (SQLite, and PostgreSQL when
APPYARD_DATABASE_URL names one)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from appyard.backends.db import migrate
from appyard.backends.db.engine import make_engine
from appyard.backends.db.tables import metadata


def test_upgrade_from_empty_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert migrate.current(engine) == migrate.head()
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), metadata
            )
        assert diff == []
    finally:
        engine.dispose()
