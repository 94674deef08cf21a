"""A spare monitor: started ahead of need by the local supervisor, imports done, waiting for a workspace.

A workspace is ready once its monitor watches it, and starting Python with the monitor's imports was
most of that time (about 0.5 s of a registration's 0.5 s on a slow machine). The supervisor keeps one
spare waiting on its stdin and hands it a workspace as one JSON line: the ``CODITECT_*`` variables that
name it (the bus identity's seed stays in its 0600 file; only its path comes through the pipe) and the
workspace's log file. Nothing of the workspace is in the spare's argv or its initial environment."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Final

# "1": wait for a workspace on stdin. Not CODITECT_MONITOR_SPARE: that is provisioning's setting (spares on or
# off), which every monitor inherits from the service's environment.
SPARE_VARIABLE: Final = "CODITECT_MONITOR_AWAIT_WORKSPACE"


def is_spare(environ: Mapping[str, str]) -> bool:
    return environ.get(SPARE_VARIABLE) == "1"


def wait_for_workspace() -> dict[str, str] | None:
    """The environment to run with once a workspace is handed over; None when the supervisor closed the
    pipe without one (it is stopping: the spare exits quietly)."""
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return None
    assignment = json.loads(line)
    log_path = assignment.get("log")
    if log_path:  # from here on the spare's output is the workspace's monitor log
        descriptor = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(descriptor, 1)
        os.dup2(descriptor, 2)
        os.close(descriptor)
    environ = {name: value for name, value in os.environ.items() if name != SPARE_VARIABLE}
    environ.update({str(name): str(value) for name, value in assignment["env"].items()})
    return environ
