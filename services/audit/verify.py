"""Offline verification of an exported trail: no running system, only the file and the public key.

    python -m services.audit.verify export.ndjson --public-key keys.json [--checkpoints checkpoints.ndjson]

``export.ndjson`` is ``GET /api/v5/audit/export``; ``keys.json`` is ``GET /api/v5/audit/keys`` (a JWK set)
or one JWK; ``checkpoints.ndjson`` is ``GET /api/v5/audit/export?kind=checkpoints`` or the messages of the
``CODITECT_AUDIT_CHECKPOINTS`` stream. Exit status 0 when the chain and every checkpoint verify, 1 if not,
2 for unreadable input. The file is read line by line (any size).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.audit.chain import NO_TENANT, ChainVerifier, Verification, public_keys


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as file:
        for number, line in enumerate(file, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number} is not JSON ({error})") from error


def verify_file(export: Path, jwks: dict[str, Any], checkpoints: list[dict[str, Any]]) -> Verification:
    records = _lines(export)
    first = next(records, None)
    if first is None:  # an empty trail verifies only if no checkpoint says it had records
        tenants = {str(c.get("tenant_id")) for c in checkpoints}
        tenant = tenants.pop() if len(tenants) == 1 else NO_TENANT
        return ChainVerifier(tenant_id=tenant, keys=public_keys(jwks), checkpoints=checkpoints).finish()
    tenant = str(first.get("tenant_id") or NO_TENANT)
    verifier = ChainVerifier(tenant_id=tenant, keys=public_keys(jwks), checkpoints=checkpoints)
    if verifier.feed(first):
        for record in records:
            if not verifier.feed(record):
                break
    return verifier.finish()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.audit.verify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("export", type=Path, help="the exported NDJSON records of one tenant")
    parser.add_argument("--public-key", type=Path, required=True, help="JWK set or JWK of the audit service")
    parser.add_argument("--checkpoints", type=Path, help="NDJSON signed checkpoints of that tenant")
    args = parser.parse_args(argv)
    try:
        jwks = json.loads(args.public_key.read_text())
        checkpoints = list(_lines(args.checkpoints)) if args.checkpoints else []
        result = verify_file(args.export, jwks, checkpoints)
    except (OSError, ValueError, KeyError) as error:
        print(f"cannot verify: {error}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "ok": result.ok,
                "checked": result.checked,
                "head": {"seq": result.head_seq, "hash": result.head_hash} if result.head_seq else None,
                "first_bad_seq": result.first_bad_seq,
                "reason": result.reason,
                "checkpoints_checked": result.checkpoints_checked,
            }
        )
    )
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
