"""Where one process's CPU goes under load: py-spy on the running system, busy samples grouped.

    python -m bench.profile health gateway          # TARGET PROCESS [SECONDS]
    python -m bench.profile users-me auth 10
    python -m bench.profile session-create session  # where POST /sessions goes in the session service

TARGET: health, ping, whoami, users-me, session-read, session-create; PROCESS: gateway, auth, session.
Starts the system like
``bench.run``, loads TARGET with wrk at 64 connections, samples PROCESS with py-spy (``uv pip install
py-spy``; not a project dependency) and prints the share of busy samples per group and the top
frames. Idle waits (the event loop's poll, idle pool threads) are left out.
"""

from __future__ import annotations

import collections
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil

from bench.loadgen import RequestSpec, run_load
from bench.system import System, call_json, register_and_login

PATHS = {
    "health": "/health",
    "ping": "/ping/auth",
    "whoami": "/auth/whoami",
    "users-me": "/users/me",
    "session-read": "/sessions/{id}",
    "session-create": "/sessions",
}
AUTHENTICATED = ("whoami", "users-me", "session-read", "session-create")
PROCESSES = ("gateway", "auth", "session")
IDLE = ("web.py:502", "runners.py:118", "thread.py:81", "uvloop/__init__.py")
GROUPS = [
    ("socket writes (HTTP responses, NATS)", ("StreamWriter._writelines", "StreamWriter.writelines")),
    (
        "embedded store and its thread hop",
        ("shared/store/", "concurrent/futures/", "threading.py", "asyncio/futures.py"),
    ),
    ("outbox (events published after commit)", ("shared/outbox.py",)),
    ("nats-py (protocol, request/reply)", ("nats/", "asyncio/tasks.py", "asyncio/queues.py", "secrets.py")),
    ("aiohttp (parse, route, response)", ("aiohttp/", "multidict", "yarl")),
    (
        "request ids, trace context",
        ("services/gateway/edge.py", "shared/telemetry.py", "opentelemetry", "random.py"),
    ),
    ("dispatcher", ("shared/dispatch.py",)),
    ("pydantic (models, JSON)", ("pydantic",)),
    ("routes, handlers, envelope", ("services/", "shared/bus.py", "contracts/", "orjson")),
]


def group_of(frame: str) -> str:
    for name, needles in GROUPS:
        if any(needle in frame for needle in needles):
            return name
    return "other"


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in PATHS or argv[1] not in PROCESSES:
        print(__doc__, file=sys.stderr)
        return 2
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: uv pip install py-spy", file=sys.stderr)
        return 2
    target, process_name = argv[0], argv[1]
    seconds = float(argv[2]) if len(argv) > 2 else 10.0
    system = System()
    try:
        system.start()
        headers: dict[str, str] = {}
        path = PATHS[target]
        if target in AUTHENTICATED:
            token = register_and_login(system.base, f"bench-profile-{secrets.token_hex(4)}@example.com", "bench-pw-123")
            headers = {"Authorization": f"Bearer {token}"}
        if target == "session-read":
            status, created = call_json("POST", f"{system.base}/sessions", {"name": "profile"}, token=token)
            if status != 201:
                raise RuntimeError(f"POST /sessions answered {status}: {created}")
            path = path.format(id=created["data"]["id"])
        assert system.process is not None
        pid = next(
            child.pid
            for child in psutil.Process(system.process.pid).children(recursive=True)
            if f"services.{process_name}" in " ".join(child.cmdline())
        )
        if target == "session-create":
            headers = {**headers, "Content-Type": "application/json"}
            spec = RequestSpec(f"{system.base}{path}", method="POST", headers=headers, body={"name": "profile"})
        else:
            spec = RequestSpec(f"{system.base}{path}", headers=headers)
        load = threading.Thread(target=run_load, args=([spec],), kwargs={"connections": 64, "duration": seconds + 3})
        load.start()
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "profile.txt"
            subprocess.run(
                [
                    spy,
                    "record",
                    "-p",
                    str(pid),
                    "-d",
                    str(round(seconds)),
                    "-r",
                    "500",
                    "-f",
                    "raw",
                    "-o",
                    str(raw),
                    "--nonblocking",
                ],
                check=True,
                capture_output=True,
                timeout=seconds + 60,
            )
            lines = raw.read_text().splitlines()
        load.join()
    finally:
        system.stop()
        system.cleanup()
    groups: collections.Counter[str] = collections.Counter()
    frames: collections.Counter[str] = collections.Counter()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        leaf = stack.split(";")[-1]
        if any(idle in leaf for idle in IDLE):
            continue
        groups[group_of(leaf)] += int(count)
        frames[re.sub(r"\(/.*?site-packages/", "(", leaf)] += int(count)
    busy = sum(groups.values())
    print(f"{process_name} under {target} at 64 connections: {busy} busy samples at 500 Hz over {seconds:g} s")
    for name, count in groups.most_common():
        print(f"  {100 * count / busy:5.1f} %  {name}")
    print("top frames:")
    for frame, count in frames.most_common(12):
        print(f"  {100 * count / busy:5.1f} %  {frame[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
