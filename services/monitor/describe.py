"""What a change says about the file's content: its size, and its sha256 under a size cap."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

CHUNK = 1024 * 1024


def describe(path: Path, hash_max_bytes: int) -> tuple[int | None, str | None]:
    """(size, sha256) of a regular file; (None, None) for anything else or a file already gone."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return None, None
    return digest_of(path, info, hash_max_bytes)


def digest_of(path: Path, info: os.stat_result, hash_max_bytes: int) -> tuple[int | None, str | None]:
    if not stat.S_ISREG(info.st_mode):
        return None, None
    if info.st_size > hash_max_bytes:
        return info.st_size, None
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if size > hash_max_bytes:  # grew while read: report the size only
                    return size, None
    except OSError:
        return info.st_size, None
    return size, digest.hexdigest()
