"""Upgrade-from-empty gives exactly the schema the code declares (SQLite, and PostgreSQL when
APPYARD_DATABASE_URL names one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_0005_keeps_the_data_of_0004(database_url: str) -> None:
    """Builds keep their number (was start_time), uploads their build (now their subject),
    apps get a slug, a pending key file gets its upload row."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    engine = make_engine(database_url)
    try:
        migrate.downgrade(engine, "0004")
        now = datetime(2026, 12, 1, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO tenants (id, name, plan, created_at) "
                    "VALUES ('tn_1', 'acme', 'team', :now)"
                ),
                {"now": now},
            )
            for app_id, platform in (("app_a", "android"), ("app_i", "ios")):
                conn.execute(
                    text(
                        "INSERT INTO apps (id, tenant_id, platform, identifier, name, created_at)"
                        " VALUES (:id, 'tn_1', :p, 'com.example', 'com.example', :now)"
                    ),
                    {"id": app_id, "p": platform, "now": now},
                )
            conn.execute(
                text(
                    "INSERT INTO builds (id, tenant_id, start_time, app_id, platform, "
                    "config_version, file_name, source_key, status, progress, created_at, "
                    "updated_at, signed, deleted) VALUES ('bd_1', 'tn_1', 1795000000, 'app_a', "
                    "'android', 'production', 'a.apk', 'k', 'completed', 'Done', :now, :now, "
                    ":f, :f)"
                ),
                {"now": now, "f": False},
            )
            conn.execute(
                text(
                    "INSERT INTO uploads (id, tenant_id, build_id, key, file_name, multipart, "
                    "state, created_at, expires_at) VALUES ('up_1', 'tn_1', 'bd_1', 'k', "
                    "'a.apk', :f, 'received', :now, :now)"
                ),
                {"now": now, "f": False},
            )
            conn.execute(
                text(
                    "INSERT INTO signing_keys (id, tenant_id, name, platform, is_default, state,"
                    " created_at, created_by, sealed_password, upload_key, file_name) VALUES "
                    "('sk_0123456789abcdef', 'tn_1', 'k', 'android', :f, 'pending', :now, 't',"
                    " :pw, 'tn_1/signing-keys/sk_0123456789abcdef/keystore', 'r.jks')"
                ),
                {"now": now, "f": False, "pw": b"sealed"},
            )
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT number FROM builds")).scalar_one() == 1795000000
            slugs = dict(conn.execute(text("SELECT id, slug FROM apps")).all())
            assert sorted(slugs.values()) == ["com.example", "com.example-ios"]
            uploads = conn.execute(
                text("SELECT subject_id, purpose, state FROM uploads ORDER BY purpose")
            ).all()
            assert [tuple(u) for u in uploads] == [
                ("bd_1", "build", "received"),
                ("sk_0123456789abcdef", "signing_key", "pending"),
            ]
    finally:
        migrate.upgrade(engine)
        engine.dispose()


def test_the_head_read_from_the_files_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    assert migrate.head() == ScriptDirectory.from_config(migrate._config()).get_current_head()


def test_the_server_migrates_a_new_database_without_loading_alembic(tmp_path: Path) -> None:
    """`appyard serve` migrates the embedded database in a child process: the server's own
    process never imports Alembic (11.7 MB it would keep for its whole life), and a database
    already at the head is not migrated at all."""
    script = """
import sys
from pathlib import Path
from appyard.cli.main import app  # everything `appyard serve` imports
from appyard.app import create_app
from appyard.backends.db import migrate
from appyard.runtime import build_runtime, upgrade_database
from appyard.settings import Settings

runtime = build_runtime(Settings(data_dir=Path(sys.argv[1])))
assert migrate.current(runtime.engine) is None
upgrade_database(runtime, apart=True)
create_app(runtime=runtime)
print(migrate.current(runtime.engine), migrate.head(), "alembic" in sys.modules)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPYARD_")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [migrate.head(), migrate.head(), "False"]
