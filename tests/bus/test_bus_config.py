"""The generated bus configuration: valid for nats-server, secrets private, no secret in it."""

from __future__ import annotations

import logging
import stat
import subprocess
from pathlib import Path

import nats as nats_client
import pytest

from shared import bus
from shared.businit import init
from shared.buspolicy import ROLES
from shared.settings import CommonSettings
from tests.support import nats_server_binary, nats_without_jetstream


def test_a_deployment_folder_has_one_private_key_per_identity_and_a_valid_configuration(tmp_path: Path) -> None:
    bus = init(tmp_path / "bus", store_dir=str(tmp_path / "js"), tls=False)
    assert stat.S_IMODE(bus.path.stat().st_mode) == 0o700
    seeds = {name: bus.seed_file(name).read_bytes().strip() for name in ROLES}
    assert len(set(seeds.values())) == len(ROLES), "never a shared credential"
    for path in bus.path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    configuration = (bus.path / "authorization.conf").read_text() + bus.server_config.read_text()
    for seed in seeds.values():
        assert seed.decode() not in configuration
    assert "password" not in configuration
    checked = subprocess.run([nats_server_binary(), "-t", "-c", str(bus.server_config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    again = init(tmp_path / "bus", store_dir=str(tmp_path / "js"), tls=True)
    assert {name: again.seed_file(name).read_bytes().strip() for name in ROLES} == seeds, "identities are kept"
    assert "tls" in again.server_config.read_text()


async def test_without_credentials_a_process_connects_to_an_open_server_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = CommonSettings(data_dir=tmp_path)
    with nats_without_jetstream(tmp_path) as server, caplog.at_level(logging.WARNING, logger="shared.bus"):
        identity = bus.identity_from(settings, "dev-tool")
        bus.identity_from(settings, "dev-tool")
        connection = await nats_client.connect(server.url, **identity.connect_options())
        await connection.close()
    assert [r.message for r in caplog.records].count(
        "dev-tool has no NATS credentials (CODITECT_NATS_SEED_FILE); connecting anonymously"
    ) == 1


def test_the_bootstrap_identity_may_create_every_stream_the_system_declares() -> None:
    from shared.bus import stream_configs
    from shared.buspolicy import STREAMS

    assert {config.name for config in stream_configs()} <= set(STREAMS), "add the stream to buspolicy.STREAMS"
