"""Create a deployment's bus identities and nats-server configuration once (compose, Kubernetes).

    python -m shared.businit secrets/bus            # compose: nats listens on 0.0.0.0:4222, store /data
    python -m shared.businit secrets/bus --tls      # plus a tls {} block (certificates mounted at /etc/nats/tls)

Writes into the folder (0700, files 0600; keep it out of git like every secret):
``<identity>.nk`` per identity, ``gateway-caller.key`` and ``operator-caller.key`` (caller-assertion keys),
``authorization.conf`` (public keys and permissions), ``nats.conf`` (includes it) and ``caller.env``
(``CODITECT_CALLER_PUBLIC_KEY=…``, public: every service loads it). Existing identities are kept, so
running it again after adding a service only adds that one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shared.busauth import AUTHORIZATION_CONFIG, BusFolder, locked, private_dir, write_private
from shared.buspolicy import GATEWAY, OPERATOR
from shared.callerproof import ensure_signing_key


def init(
    folder: Path,
    *,
    store_dir: str,
    tls: bool,
    listen: str = "0.0.0.0:4222",
    monitoring: str | None = "0.0.0.0:8222",
    tls_dir: str = "/etc/nats/tls",
) -> BusFolder:
    bus = BusFolder(private_dir(folder))
    with locked(bus.path):
        bus.write_authorization(extra_users=[])
    trusted = ",".join(ensure_signing_key(bus.path / f"{name}-caller.key") for name in (GATEWAY, OPERATOR))
    write_private(bus.path / "caller.env", f"CODITECT_CALLER_PUBLIC_KEY={trusted}\n".encode())
    lines = [
        f"listen: {json.dumps(listen)}",
        *([f"http: {json.dumps(monitoring)}"] if monitoring else []),
        f"jetstream: {{store_dir: {json.dumps(store_dir)}}}",
        f"include {json.dumps('./' + AUTHORIZATION_CONFIG)}",
    ]
    if tls:
        # Across hosts the bus carries passwords and tokens: clients then use tls://nats:4222.
        files = {name: json.dumps(f"{tls_dir}/{name}") for name in ("tls.crt", "tls.key", "ca.crt")}
        lines.append(
            f"tls: {{cert_file: {files['tls.crt']}, key_file: {files['tls.key']}, "
            f"ca_file: {files['ca.crt']}, timeout: 2}}"
        )
    write_private(bus.server_config, ("\n".join(lines) + "\n").encode())
    return bus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--store-dir", default="/data", help="JetStream's store inside the nats container")
    parser.add_argument("--tls", action="store_true", help="require TLS from clients (certificates in /etc/nats/tls)")
    args = parser.parse_args()
    bus = init(args.folder, store_dir=args.store_dir, tls=args.tls)
    print(f"bus identities and nats-server configuration in {bus.path}")


if __name__ == "__main__":
    main()
