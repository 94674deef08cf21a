"""A data folder from before one-file-per-service keeps its data: each service takes its own rows."""

from __future__ import annotations

from pathlib import Path

import apsw
import fdb.tuple

from shared.settings import CommonSettings
from shared.store import open_store


def _legacy(folder: Path, rows: dict[bytes, bytes]) -> None:
    folder.mkdir(parents=True)
    conn = apsw.Connection(str(folder / "coditect.sqlite3"))
    conn.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    for key, value in rows.items():
        conn.execute("INSERT INTO kv VALUES (?, ?)", (key, value))
    conn.close()


async def test_each_service_takes_only_its_own_rows_from_the_legacy_file(tmp_path: Path) -> None:
    auth_key, session_key = fdb.tuple.pack(("auth", "user", "1")), fdb.tuple.pack(("session", "s", "1"))
    _legacy(tmp_path / "store", {auth_key: b"ada", session_key: b"workspace"})
    settings = CommonSettings(data_dir=tmp_path)
    auth = open_store(settings, "auth")
    try:
        assert await auth.run(lambda tx: tx.get(auth_key)) == b"ada"
        assert await auth.run(lambda tx: tx.get(session_key)) is None
        await auth.run(lambda tx: tx.set(auth_key, b"changed"))
    finally:
        auth.close()
    reopened = open_store(settings, "auth")  # moved once: a restart does not copy again
    try:
        assert await reopened.run(lambda tx: tx.get(auth_key)) == b"changed"
    finally:
        reopened.close()
    assert (tmp_path / "store" / "auth.sqlite3").stat().st_mode & 0o777 == 0o600
