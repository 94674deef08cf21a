"""Reference (p): the authenticated read of ``GET /api/v5/users/me`` as a FastAPI + uvicorn app
(2 workers, uvloop, httptools), with nothing of ours in it: an EdDSA verify of the bearer token
(PyJWT, every request), one SQLite point read (WAL, the embedded store's pragmas) and a JSON reply.

    python -m bench.fastapi_ref PORT DIR     # DIR holds public.pem and users.sqlite3 (see ``prepare``)

``prepare(DIR)`` makes the key pair, a database of users and a token for one of them.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ISSUER = "coditect-auth"
AUDIENCE = "coditect-api"
USERS = 10_000
DIR_ENV = "CODITECT_BENCH_FASTAPI_DIR"


def prepare(directory: Path) -> str:
    """Write the public key and the users' database into ``directory``; a valid access token."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    (directory / "public.pem").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    ids = [uuid.uuid4() for _ in range(USERS)]
    db = sqlite3.connect(directory / "users.sqlite3")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS users (id BLOB PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID")
    now = datetime.now(UTC).isoformat()
    db.executemany(
        "INSERT OR REPLACE INTO users VALUES (?, ?)",
        [
            (
                user.bytes,
                (
                    f'{{"id":"{user}","email":"u{i}@example.com","name":"Bench","tenant_id":"{user}",'
                    f'"roles":["admin"],"created_at":"{now}"}}'
                ).encode(),
            )
            for i, user in enumerate(ids)
        ],
    )
    db.commit()
    db.close()
    user = ids[USERS // 2]
    issued = datetime.now(UTC)
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(user),
        "tid": str(user),
        "sid": str(uuid.uuid4()),
        "roles": ["admin"],
        "iat": issued,
        "nbf": issued,
        "exp": issued + timedelta(hours=2),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "bench"})


class User(BaseModel):
    id: uuid.UUID
    email: str
    name: str | None
    tenant_id: uuid.UUID
    roles: list[str]
    created_at: datetime


class Envelope(BaseModel):
    success: bool = True
    data: User


def create_app(directory: Path) -> Any:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from fastapi import FastAPI, Header, HTTPException

    public_key = serialization.load_pem_public_key((directory / "public.pem").read_bytes())
    db = sqlite3.connect(directory / "users.sqlite3", check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    app = FastAPI()

    @app.get("/users/me")
    async def me(authorization: str = Header()) -> Envelope:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise HTTPException(401)
        try:
            claims = jwt.decode(
                token,
                public_key,  # type: ignore[arg-type]
                algorithms=["EdDSA"],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=30,
                options={"require": ["iss", "aud", "sub", "tid", "sid", "iat", "exp", "jti"]},
            )
        except jwt.PyJWTError as error:
            raise HTTPException(401) from error
        row = db.execute("SELECT body FROM users WHERE id = ?", (uuid.UUID(claims["sub"]).bytes,)).fetchone()
        if row is None:
            raise HTTPException(404)
        # FastAPI's fast path: a declared return model, serialized straight to JSON by pydantic.
        return Envelope(data=User.model_validate_json(row[0]))

    return app


def app_from_env() -> Any:
    return create_app(Path(os.environ[DIR_ENV]))


def main() -> None:
    import uvicorn

    port, directory = int(sys.argv[1]), sys.argv[2]
    os.environ[DIR_ENV] = directory
    uvicorn.run(
        "bench.fastapi_ref:app_from_env",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=2,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
