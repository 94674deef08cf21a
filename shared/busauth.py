"""Bus identities: one NATS nkey per process role, kept in a private folder, and the nats-server
configuration that lets each of them do exactly what ``shared.buspolicy`` says.

The folder (``<data>/bus`` under ``./dev up``) holds:

- ``<identity>.nk``: the identity's nkey seed, 0600, created on first start and never logged;
- ``monitor-issuer.nk``: the account nkey seed that signs workspace monitors' authorizations (given to
  provisioning only: ``shared.buscallout``);
- ``nats.conf``: the server's settings, including ``authorization.conf``;
- ``authorization.conf``: every identity's public key and permissions (no secret: nkeys are
  challenge/response, the server keeps public keys only), and the authorization callout that admits
  workspace monitors. Written once: monitors come and go without touching it, so the server never
  reloads (a reload forgets the reply grants of requests in flight).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import nkeys

from shared.buspolicy import ROLES

SEED_SUFFIX: Final = ".nk"
SERVER_CONFIG: Final = "nats.conf"
AUTHORIZATION_CONFIG: Final = "authorization.conf"
MONITOR_ISSUER: Final = "monitor-issuer"
PID_FILE: Final = "nats.pid"
LOCK_FILE: Final = ".lock"


def new_user_seed() -> bytes:
    """A fresh nkey user seed (``SU...``) from the OS's random source."""
    return bytes(nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER))


def new_account_seed() -> bytes:
    """A fresh nkey account seed (``SA...``): the issuer of callout-made user authorizations."""
    return bytes(nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_ACCOUNT))


def public_key_of(seed: bytes) -> str:
    return str(nkeys.from_seed(bytearray(seed)).public_key.decode())


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, created that way (never briefly world-readable)."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(tmp, path)


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One writer of the folder's registry and configuration at a time (across processes)."""
    with os.fdopen(os.open(folder / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class BusFolder:
    """The folder of identities and server configuration."""

    path: Path

    def seed_file(self, identity: str) -> Path:
        return self.path / f"{identity}{SEED_SUFFIX}"

    def ensure_identity(self, identity: str) -> str:
        """The identity's public key; its seed is created on first use."""
        private_dir(self.path)
        seed_file = self.seed_file(identity)
        if not seed_file.exists():
            write_private(seed_file, new_account_seed() if identity == MONITOR_ISSUER else new_user_seed())
        os.chmod(seed_file, 0o600)
        return public_key_of(seed_file.read_bytes().strip())

    def ensure_identities(self, identities: list[str] | None = None) -> dict[str, str]:
        return {name: self.ensure_identity(name) for name in (identities or list(ROLES))}

    @property
    def server_config(self) -> Path:
        return self.path / SERVER_CONFIG

    @property
    def pid_file(self) -> Path:
        return self.path / PID_FILE

    @property
    def monitor_issuer_seed_file(self) -> Path:
        return self.seed_file(MONITOR_ISSUER)

    def write_authorization(self, *, extra_users: list[dict[str, Any]] | None = None) -> Path:
        """Render ``authorization.conf``: the roles' public keys and permissions, and the callout.

        Every configured user is an ``auth_user`` of the callout (the server checks it as configured);
        anyone else, a workspace monitor, is admitted only by provisioning's answer, signed by the
        monitor issuer (``shared.buscallout``)."""
        users: list[dict[str, Any]] = [
            {"nkey": self.ensure_identity(name), "permissions": role.permissions()} for name, role in ROLES.items()
        ]
        extra = extra_users if extra_users is not None else self._extra_users()
        if extra_users is not None:
            write_private(self.path / "extra-users.json", json.dumps(extra_users).encode())
        users.extend(extra)
        callout = {
            "issuer": self.ensure_identity(MONITOR_ISSUER),
            "auth_users": [user.get("nkey") or user["user"] for user in users],
        }
        target = self.path / AUTHORIZATION_CONFIG
        # JSON is valid nats-server configuration; a quoted "$JS.API..." is not a variable.
        body = json.dumps({"users": users, "auth_callout": callout}, indent=1)
        write_private(target, b"authorization: " + body.encode() + b"\n")
        return target

    def _extra_users(self) -> list[dict[str, Any]]:
        """Users a test harness added when it wrote the configuration first (kept across rewrites)."""
        extra = self.path / "extra-users.json"
        if not extra.exists():
            return []
        users: list[dict[str, Any]] = json.loads(extra.read_text())
        return users

    def write_server_config(
        self,
        *,
        port: int,
        store_dir: Path,
        host: str = "127.0.0.1",
        server_name: str = "coditect-local",
        log_file: Path | None = None,
        extra_users: list[dict[str, Any]] | None = None,
    ) -> Path:
        """Write ``nats.conf`` (and ``authorization.conf``) for a local single server with JetStream."""
        private_dir(self.path)
        with locked(self.path):
            self.write_authorization(extra_users=extra_users)
        lines = [
            f"server_name: {json.dumps(server_name)}",
            f"listen: {json.dumps(f'{host}:{port}')}",
            f"pid_file: {json.dumps(str(self.pid_file))}",
            f"jetstream: {{store_dir: {json.dumps(str(store_dir))}}}",
            # An identity that is refused is logged by the server with its name and the subject.
            f"include {json.dumps('./' + AUTHORIZATION_CONFIG)}",
        ]
        if log_file is not None:
            lines.insert(3, f"log_file: {json.dumps(str(log_file))}")
        write_private(self.server_config, ("\n".join(lines) + "\n").encode())
        return self.server_config
