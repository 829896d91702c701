"""Helpers for the launch tests: run the `persist` CLI as a real subprocess, poll with deadlines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TALKER_LISTENER = ROOT / "launch" / "talker_listener.yaml"


def persist(*args: str, cwd: Path | None = None, input: str | None = None, timeout: float = 60.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "persist_rt.cli", *args], cwd=cwd or ROOT, input=input,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def persist_json(*args: str, **kw: Any) -> Any:
    out = persist(*args, "--json", **kw)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def start_launch(*args: str, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", "persist_rt.cli", "launch", *args], cwd=cwd,
                                stdout=f, stderr=subprocess.STDOUT)


def stop_launch(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Ctrl-C a launch that is still running, as a user would; kill it if it does not stop in ``timeout_s``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_for(what: str, check: Callable[[], Any], deadline_s: float = 30.0, every_s: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            last = check()
        except (AssertionError, OSError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def run_processes(run_id: str) -> list[int]:
    """Pids of every process on this machine whose environment says it belongs to run ``run_id``."""
    marker = f"PERSIST_RUN_ID={run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and marker in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def nodes_by_name(registry: str) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in persist_json("node", "list", "--registry", registry)}
