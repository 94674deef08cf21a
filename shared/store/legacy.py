"""One-time move from the single shared store file of earlier versions (``coditect.sqlite3``) to one
file per service: a service's first start copies the rows under its own prefix."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import apsw
import fdb.tuple

log = logging.getLogger(__name__)

LEGACY_NAME = "coditect.sqlite3"


def migrate_legacy_store(target: Path, service: str) -> int:
    """Copy ``service``'s rows from the legacy file into ``target`` if ``target`` does not exist yet.
    The copy is built aside and linked into place, so a concurrent start sees all of it or none."""
    legacy = target.with_name(LEGACY_NAME)
    if target.exists() or not legacy.exists():
        return 0
    prefix = fdb.tuple.pack((service,))
    aside = target.with_name(f".{target.name}.{os.getpid()}.migrating")
    source = apsw.Connection(str(legacy), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        copy = apsw.Connection(str(aside))
        try:
            copy.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
            copy.execute("BEGIN")
            rows = source.execute("SELECT key, value FROM kv WHERE key >= ? AND key < ?", (prefix, prefix + b"\xff"))
            count = 0
            for count, (key, value) in enumerate(rows, start=1):  # noqa: B007
                copy.execute("INSERT INTO kv (key, value) VALUES (?, ?)", (key, value))
            copy.execute("COMMIT")
        finally:
            copy.close()
    finally:
        source.close()
    os.chmod(aside, 0o600)
    try:
        os.link(aside, target)
    except FileExistsError:
        count = 0  # another process of the service moved it first
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)
    if count:
        log.warning("moved %d %s rows from the shared %s into %s", count, service, LEGACY_NAME, target.name)
    return count
