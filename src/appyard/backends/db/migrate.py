"""Alembic, driven from code: ``appyard db upgrade`` and the embedded server's start-up.

Alembic (and Mako, which it pulls in) is imported only to migrate: the revision a database is
at and the code's head are read without it (``current``: one ``SELECT`` of
``alembic_version``; ``head``: the ``revision`` / ``down_revision`` lines of the migration
files), so a process whose database is already at the head never loads it, and
``appyard serve`` migrates in a child process (``upgrade_apart``), keeping the 11.7 MB that
Alembic holds out of the long-running server (bench/README.md, "Upload path").
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(r'^(down_revision|revision)\s*=\s*(?:"([^"]*)"|None)\s*$', re.M)


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision``. On SQLite, foreign keys are off while it runs (Alembic's batch
    mode rebuilds tables, which a referenced table cannot survive with them on), and checked
    before the transaction commits."""
    from alembic import command

    cfg = _config()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:  # must happen outside a transaction, so on the raw connection
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration broke foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def upgrade_apart(url: str) -> None:
    """Migrate the database at ``url`` to the head in a child process (this module run as a
    script); ``RuntimeError`` with the child's last words when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "appyard.backends.db.migrate"],
        input=url,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        words = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"the database migration failed: {words[-1] if words else '?'}")


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate back to ``revision`` (tests of a migration's data; operators restore backups)."""
    from alembic import command

    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: not migrated yet), as Alembic records it."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).fetchall()
    if len(rows) > 1:
        raise RuntimeError(f"the database is at several heads: {sorted(r[0] for r in rows)}")
    return str(rows[0][0]) if rows else None


def head() -> str | None:
    """The code's head: the one revision no migration names as its ``down_revision``."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((name, value) for name, value in _REVISION.findall(path.read_text()))
        if found.get("revision"):
            revisions.add(found["revision"])
            if found.get("down_revision"):
                parents.add(found["down_revision"])
    heads = revisions - parents
    if len(heads) > 1:
        raise RuntimeError(f"the migrations have several heads: {sorted(heads)}")
    return next(iter(heads), None)


def revision(engine: Engine, message: str, rev_id: str) -> None:
    """Autogenerate a migration (developer tool)."""
    from alembic import command

    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)


if __name__ == "__main__":  # upgrade_apart's child: the URL on standard input
    from appyard.backends.db.engine import make_engine

    engine = make_engine(sys.stdin.read().strip())
    try:
        upgrade(engine)
    finally:
        engine.dispose()
