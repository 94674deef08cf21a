"""The auth service's signing keys as a running service handles them: start-up with the KEK."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from datetime import timedelta
from pathlib import Path

import pytest

from services.auth import repository as repo
from services.auth.app import build, key_encryption_key
from services.auth.keyring import KeyRing
from services.auth.settings import AuthSettings
from shared.service import build_context, serve
from shared.store.embedded import EmbeddedStore
from tests.conftest import service_env
from tests.support import NatsServer


def kek_file(path: Path) -> Path:
    path.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
    return path


async def test_a_wrong_kek_stops_the_service_at_start_with_one_clear_line(
    nats: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    right = AuthSettings(
        **service_env(nats.url, tmp_path / "data"), signing_key_encryption_key_file=kek_file(tmp_path / "right")
    )
    store = EmbeddedStore(right.embedded_store_path)
    ring = KeyRing(
        store,
        kek=key_encryption_key(right),
        rotation_age=timedelta(days=30),
        published_after_retire=timedelta(minutes=5),
    )
    kid = (await ring.active()).kid

    wrong = right.model_copy(update={"signing_key_encryption_key_file": kek_file(tmp_path / "wrong")})
    caplog.set_level(logging.INFO)
    # The service stops by itself: serve returns without anyone setting its stop event.
    await asyncio.wait_for(serve(build_context("auth", wrong), build(wrong), asyncio.Event()), 20)

    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.CRITICAL]
    assert len(lines) == 1 and "cannot open its signing keys" in lines[0] and "wrong key" in lines[0]
    assert [key.kid for key in await store.run(repo.signing_keys)] == [kid]
    store.close()
