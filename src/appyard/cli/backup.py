"""``appyard admin backup`` and ``restore``: a consistent copy of an embedded appyard.

A backup is a folder:

* ``appyard.db``: the SQLite database, copied with SQLite's online backup API (a consistent
  snapshot while servers and workers write);
* ``keys/``: ``master.key`` (it opens the signing keys in the database) and ``secret.key``
  (signed URLs), as the data folder holds them (mode 0600);
* ``blobs/objects/``: the local store's objects, copied after the database, so every object
  the snapshot names is there unless it was deleted in between (a deleted build's);
* ``manifest.json``: what was copied, the migration revision, and what was not.

PostgreSQL and S3 hold their own data: the backup then holds the keys and says which of their
own tools to use (``pg_dump``, bucket versioning or replication, ``rclone``), like
docs/operations.md. Keys given in ``APPYARD_MASTER_KEY`` / ``APPYARD_SECRET_KEY`` are not
written to the backup: keep them where they came from.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from appyard.settings import Settings

KEYS = ("master.key", "master.key.next", "secret.key")
FORMAT = 1


class BackupError(Exception):
    """A backup or restore that cannot be done, in one sentence."""


def _empty_folder(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{path} is not an empty folder.")
    path.mkdir(parents=True, exist_ok=True)


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    return Path(url.split(":///", 1)[1])


def _revision(db: Path) -> str | None:
    with sqlite3.connect(db) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            return None
    return str(row[0]) if row else None


def _copy_tree(source: Path, target: Path) -> tuple[int, int]:
    """Copy the files under ``source`` (a file that goes away meanwhile is skipped); returns
    (files, bytes)."""
    files = size = 0
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, dest)
        except FileNotFoundError:
            continue
        files += 1
        size += dest.stat().st_size
    return files, size


def backup(settings: Settings, target: Path) -> dict[str, Any]:
    """Back up what ``settings`` name into the new folder ``target``; returns the manifest."""
    target = target.resolve()
    _empty_folder(target)
    notes: list[str] = []
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "appyard": version("appyard"),
        "created_at": datetime.now(UTC).isoformat(),
        "database": None,
        "revision": None,
        "storage": None,
        "keys": [],
        "objects": 0,
        "bytes": 0,
        "notes": notes,
    }
    db = _sqlite_path(settings.effective_database_url)
    if db is not None:
        if not db.exists():
            raise BackupError(f"There is no database at {db}.")
        source = sqlite3.connect(db, timeout=30)
        copy = sqlite3.connect(target / "appyard.db")
        try:
            with copy:
                source.backup(copy)  # SQLite's online backup API: one consistent snapshot
        finally:
            copy.close()
            source.close()
        manifest["database"] = "sqlite"
        manifest["revision"] = _revision(target / "appyard.db")
    else:
        manifest["database"] = "postgresql"
        notes.append(
            "The database is PostgreSQL: back it up with its own tools, e.g. "
            "`pg_dump -Fc -f appyard.dump <database>` (restore with `pg_restore`), or "
            "continuous WAL archiving (pgBackRest)."
        )
    keys = target / "keys"
    keys.mkdir(mode=0o700)
    for name in KEYS:
        path = settings.data_dir / name
        if path.exists():
            shutil.copyfile(path, keys / name)
            os.chmod(keys / name, 0o600)
            manifest["keys"].append(name)
    if settings.master_key is not None:
        notes.append("The master key comes from APPYARD_MASTER_KEY: it is not in the backup.")
    if settings.secret_key is not None:
        notes.append("The URL secret comes from APPYARD_SECRET_KEY: it is not in the backup.")
    storage = urlsplit(settings.effective_storage_url)
    if storage.scheme == "file":
        root = Path(unquote(storage.path))
        manifest["storage"] = "local"
        files, size = _copy_tree(root / "objects", target / "blobs" / "objects")
        manifest["objects"], manifest["bytes"] = files, size
        notes.append(f"{files} objects ({size} bytes) copied from {root}.")
    else:
        manifest["storage"] = "s3"
        notes.append(
            "The objects are in S3: back the bucket up with its own means (versioning and "
            "replication, `mc mirror`, or `rclone sync` to a second bucket)."
        )
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def restore(source: Path, data_dir: Path) -> dict[str, Any]:
    """Lay the backup in ``source`` out as the new data folder ``data_dir`` (database, keys,
    blobs), checking the database's integrity; returns the manifest."""
    source = source.resolve()
    manifest_path = source / "manifest.json"
    if not manifest_path.exists():
        raise BackupError(f"{source} holds no appyard backup (no manifest.json).")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source} is a backup of format {manifest.get('format')}, not {FORMAT}.")
    data_dir = data_dir.resolve()
    _empty_folder(data_dir)
    notes: list[str] = []
    if manifest.get("database") == "sqlite":
        db = data_dir / "appyard.db"
        shutil.copyfile(source / "appyard.db", db)
        with sqlite3.connect(db) as conn:
            (check,) = conn.execute("PRAGMA integrity_check").fetchone()
        if check != "ok":
            raise BackupError(f"The database in the backup is damaged: {check}.")
        notes.append(f"database at migration {manifest.get('revision')}")
    else:
        notes.append(
            "Restore PostgreSQL with its own tools (pg_restore) and point "
            "APPYARD_DATABASE_URL at it."
        )
    for name in manifest.get("keys", []):
        shutil.copyfile(source / "keys" / name, data_dir / name)
        os.chmod(data_dir / name, 0o600)
    if manifest.get("storage") == "local":
        files, size = _copy_tree(source / "blobs", data_dir / "blobs")
        notes.append(f"{files} objects ({size} bytes) in {data_dir / 'blobs'}")
    else:
        notes.append("The objects are in S3: point APPYARD_STORAGE_URL at the bucket.")
    return {**manifest, "notes": notes, "data_dir": str(data_dir)}
