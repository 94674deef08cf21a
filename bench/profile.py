"""Where one process's CPU goes under load: py-spy on the running system, busy samples grouped.

    python -m bench.profile health gateway                 # TARGET PROCESS [SECONDS] [--gil]
    python -m bench.profile users-me auth 10
    python -m bench.profile session-create session --gil  # POST /sessions, one user, in the session service
    python -m bench.profile session-create-users session --gil   # the same from 64 users
    python -m bench.profile session-create session --raw /tmp/stacks.txt  # also keep py-spy's stacks
    python -m bench.profile files file_event 8                     # file-event ingest (bench/file_events.py's load)

TARGET: health, ping, whoami, users-me, session-read, session-create, session-create-users, files;
PROCESS: gateway, auth, session, file_event. Starts the system like ``bench.run``, loads TARGET with wrk at 64
connections, samples PROCESS with py-spy (``uv pip install py-spy``; not a project dependency) and
prints the share of busy samples per group (by the innermost frame), per thread, the top innermost
frames, and the project's functions by inclusive share (the share of samples with the function
anywhere on the stack). Idle waits (the event loop's poll, idle pool threads, the store writer
waiting for work) are left out. ``--gil`` samples only the thread holding the GIL: without it a
thread waiting for the GIL or blocked in a system call counts as busy too.
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
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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
    "session-create-users": "/sessions",
    "files": "",  # not HTTP: a workspace monitor's publishes, as bench/file_events.py makes them
}
AUTHENTICATED = ("whoami", "users-me", "session-read", "session-create", "session-create-users")
PROCESSES = ("gateway", "auth", "session", "file_event", "audit")
FILE_EVENTS = 150_000
CONNECTIONS = 64
IDLE = (
    "web.py:502",
    "runners.py:118",
    "thread.py:81",
    "uvloop/__init__.py",
    "_write_loop (shared/store/embedded.py:453)",  # the writer thread waiting for commits
)
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


def _function(frame: str) -> str:
    """``name (path:line)`` → ``name (path)``: a function, whatever line was running."""
    return re.sub(r":\d+\)$", ")", re.sub(r"\(/.*?site-packages/", "(", frame))


def specs_for(system: System, target: str) -> list[RequestSpec]:
    path = PATHS[target]
    if target not in AUTHENTICATED:
        return [RequestSpec(f"{system.base}{path}")]
    users = CONNECTIONS if target == "session-create-users" else 1
    tokens = [
        register_and_login(system.base, f"bench-profile-{i}-{secrets.token_hex(4)}@example.com", "bench-pw-123")
        for i in range(users)
    ]
    if target == "session-read":
        status, created = call_json("POST", f"{system.base}/sessions", {"name": "profile"}, token=tokens[0])
        data = created.get("data")
        if status != 201 or not isinstance(data, dict):
            raise RuntimeError(f"POST /sessions answered {status}: {created}")
        path = path.format(id=data["id"])
    if target.startswith("session-create"):
        return [
            RequestSpec(
                f"{system.base}{path}",
                method="POST",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                body={"name": "profile"},
            )
            for token in tokens
        ]
    return [RequestSpec(f"{system.base}{path}", headers={"Authorization": f"Bearer {tokens[0]}"})]


def files_load(system: System) -> Callable[[], object]:
    """Publish FILE_EVENTS changes as one workspace's monitor and wait until all are stored."""
    import asyncio
    from uuid import UUID

    from bench.file_events import bodies, end_to_end, workspace_monitor_credentials

    token = register_and_login(system.base, f"bench-profile-{secrets.token_hex(4)}@example.com", "bench-pw-123")
    _, who = call_json("GET", f"{system.base}/auth/whoami", token=token)
    caller: Any = who["data"]
    tenant, user = UUID(caller["tenant_id"]), UUID(caller["user_id"])
    bus_dir = system.data_dir / "bus"
    credentials = workspace_monitor_credentials(system, token, tenant, user)
    items = bodies(FILE_EVENTS)
    url = f"nats://127.0.0.1:{system.nats_port}"

    def load() -> object:
        rate, _ = asyncio.run(end_to_end(url, credentials, str(bus_dir / "file_event.nk"), items))
        return SimpleNamespace(rps=rate)

    return load


def record(spy: str, pid: int, seconds: float, gil: bool, keep: Path | None = None) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "profile.txt"
        command = [spy, "record", "-p", str(pid), "-d", str(round(seconds)), "-r", "500", "-f", "raw"]
        command += ["-o", str(raw), "--nonblocking", "--threads", *(["--gil"] if gil else [])]
        subprocess.run(command, check=True, capture_output=True, timeout=seconds + 60)
        if keep is not None:  # for a flame graph or a closer look than the summary
            shutil.copyfile(raw, keep)
        return raw.read_text().splitlines()


def report(lines: list[str], title: str) -> None:
    groups: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if any(idle in frames[-1] for idle in IDLE):
            continue
        count = int(count_text)
        groups[group_of(frames[-1])] += count
        leaves[re.sub(r"\(/.*?site-packages/", "(", frames[-1])] += count
        thread, _, _ = frames[0].partition(";")
        threads[thread.split(": ", 1)[-1] if thread.startswith("thread") else "?"] += count
        for function in {_function(frame) for frame in frames[1:]}:
            inclusive[function] += count
    busy = sum(groups.values()) or 1
    print(f"{title}: {busy} busy samples")
    print("by thread:")
    for name, count in threads.most_common():
        print(f"  {100 * count / busy:5.1f} %  {name}")
    print("by group (innermost frame):")
    for name, count in groups.most_common():
        print(f"  {100 * count / busy:5.1f} %  {name}")
    print("top innermost frames:")
    for frame, count in leaves.most_common(12):
        print(f"  {100 * count / busy:5.1f} %  {frame[:110]}")
    print("the project's functions, inclusive (below the service's entry):")
    own = [(f, c) for f, c in inclusive.most_common() if re.search(r"\((services|shared)/", f)]
    for function, count in [(f, c) for f, c in own if "__main__" not in f and "run_service" not in f][:25]:
        print(f"  {100 * count / busy:5.1f} %  {function[:110]}")


def main(argv: list[str]) -> int:
    gil = "--gil" in argv
    argv = [arg for arg in argv if arg != "--gil"]
    keep = None
    if "--raw" in argv:
        at = argv.index("--raw")
        keep = Path(argv[at + 1])
        del argv[at : at + 2]
    if len(argv) < 2 or argv[0] not in PATHS or argv[1] not in PROCESSES:
        print(__doc__, file=sys.stderr)
        return 2
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: uv pip install py-spy", file=sys.stderr)
        return 2
    target, process_name = argv[0], argv[1]
    seconds = float(argv[2]) if len(argv) > 2 else 10.0
    # As bench.run: users registered here get no workspace (and no monitor with its own credentials).
    env = {"CODITECT_PROVISIONING_ON_REGISTER": "false"} if target == "files" else {}
    if process_name == "gateway":  # one gateway: every request then passes through the process sampled
        env["CODITECT_GATEWAY_WORKERS"] = "1"
    system = System(env)
    try:
        system.start()
        if target == "files":
            load_files = files_load(system)
            run = load_files
            specs: list[RequestSpec] = []
        else:
            specs = specs_for(system, target)
            run = lambda: run_load(specs, connections=CONNECTIONS, duration=seconds + 3)  # noqa: E731
        assert system.process is not None
        process = next(
            child
            for child in psutil.Process(system.process.pid).children(recursive=True)
            if f"services.{process_name}" in " ".join(child.cmdline())
        )
        loads: list[object] = []
        load = threading.Thread(target=lambda: loads.append(run()))
        load.start()
        if target == "files":
            time.sleep(1.5)  # sample while events flow, not the publisher's start
        cpu_before = process.cpu_times()
        lines = record(spy, process.pid, seconds, gil, keep)
        cpu_after = process.cpu_times()
        load.join()
    finally:
        system.stop()
        system.cleanup()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    measured = loads[0] if loads else None
    rate = getattr(measured, "rps", float("nan"))
    print(
        f"{process_name} under {target} at {CONNECTIONS} connections ({len(specs)} user(s)): {rate:,.0f} req/s "
        f"while sampled, {process_name} CPU {cpu:.2f} s in {seconds:g} s = {cpu / max(rate * seconds, 1) * 1e6:,.0f} "
        f"µs per request (py-spy's sampling included); {'GIL holder only' if gil else 'every thread'}, 500 Hz"
    )
    report(lines, f"{process_name} under {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
