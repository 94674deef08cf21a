"""The embedded store and the local data folder are private to their owner, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.store.embedded import EmbeddedStore
from shared.supervisor import private_folder


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """Under umask 0 anything whose mode the code does not set itself comes out world-writable."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def store_files(path: Path) -> list[Path]:
    return [path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")]


def test_a_fresh_embedded_store_is_0700_with_0600_files(tmp_path: Path) -> None:
    path = tmp_path / "data" / "store" / "coditect.sqlite3"
    store = EmbeddedStore(path)
    try:
        store.run_sync(lambda tx: tx.set(b"k", b"v"))
        assert mode(path.parent) == 0o700
        for file in store_files(path):
            assert file.exists() and mode(file) == 0o600, file
    finally:
        store.close()


def test_an_older_store_left_readable_is_made_private_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "store" / "coditect.sqlite3"
    first = EmbeddedStore(path)
    first.run_sync(lambda tx: tx.set(b"k", b"v"))
    os.chmod(path.parent, 0o755)
    for file in store_files(path):
        os.chmod(file, 0o644)
    second = EmbeddedStore(path)
    try:
        assert second.run_sync(lambda tx: tx.get(b"k")) == b"v"
        assert mode(path.parent) == 0o700
        assert all(mode(file) == 0o600 for file in store_files(path))
    finally:
        second.close()
        first.close()


def test_the_local_data_folder_is_0700(tmp_path: Path) -> None:
    fresh = private_folder(tmp_path / "fresh" / "data")
    assert mode(fresh) == 0o700
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    assert mode(private_folder(existing)) == 0o700
