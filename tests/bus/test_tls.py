"""The bus over TLS, as compose and Kubernetes run it across hosts (``python -m shared.businit --tls``):
the generated configuration requires TLS, processes connect on ``tls://`` trusting the deployment's CA
through ``SSL_CERT_FILE``, a client that does not trust it is refused, and nothing is spoken in
plaintext."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import nats as nats_client
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared import bus
from shared.bootstrap import bootstrap_streams
from shared.businit import init
from shared.buspolicy import OPERATOR
from shared.settings import CommonSettings
from tests.support import _spawn_nats, free_port, start_service


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_certificates(folder: Path) -> None:
    """A CA, and a server certificate it signed for ``nats``, ``localhost`` and 127.0.0.1."""
    folder.mkdir(parents=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("coditect test CA"))
        .issuer_name(_name("coditect test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("nats"), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("nats"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@pytest.fixture
def tls_bus(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A nats-server on the configuration ``businit --tls`` writes: (tls URL, bus folder, CA file)."""
    write_certificates(tmp_path / "tls")
    port = free_port()
    folder = init(
        tmp_path / "bus",
        store_dir=str(tmp_path / "js"),
        tls=True,
        listen=f"127.0.0.1:{port}",
        monitoring=None,
        tls_dir=str(tmp_path / "tls"),
    )
    process = _spawn_nats(port, tmp_path / "js", config=folder.server_config)
    try:
        yield f"tls://127.0.0.1:{port}", folder.path, tmp_path / "tls" / "ca.crt"
    finally:
        process.terminate()
        process.wait(10)


async def test_services_connect_over_tls_trusting_the_deployments_ca(
    tls_bus: tuple[str, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, folder, ca = tls_bus
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    await bootstrap_streams(url, folder / "bootstrap.nk", timeout=15)
    settings = CommonSettings(nats_url=url, nats_seed_file=folder / "session.nk", data_dir=tmp_path / "data")
    service = await start_service("session", settings, lambda ctx: None)
    try:
        operator = bus.BusIdentity(OPERATOR, folder / "operator.nk")
        client = await nats_client.connect(url, connect_timeout=5, **operator.connect_options())
        try:
            assert client.connected_url is not None and client.connected_url.scheme == "tls"
            reply = await client.request("rpc.session.ping", b"{}", timeout=5)
            assert json.loads(reply.data)["ok"] is True
        finally:
            await client.close()
    finally:
        await service.shutdown()


async def test_a_client_that_does_not_trust_the_ca_is_refused(
    tls_bus: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, folder, _ = tls_bus
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    operator = bus.BusIdentity(OPERATOR, folder / "operator.nk")
    with pytest.raises(Exception, match=r"(?i)certificate"):
        await nats_client.connect(url, connect_timeout=5, allow_reconnect=False, **operator.connect_options())


def test_the_server_speaks_no_plaintext(tls_bus: tuple[str, Path, Path]) -> None:
    url, _, _ = tls_bus
    host, port = url.removeprefix("tls://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        info = conn.recv(4096).decode()
        assert info.startswith("INFO ") and json.loads(info[5:])["tls_required"] is True
        conn.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        answer, closed = b"", False
        try:
            while chunk := conn.recv(4096):
                answer += chunk
            closed = True
        except ConnectionError:
            closed = True
    assert closed and b"PONG" not in answer
