"""Real processes on real sockets: a registry and nodes started as subprocesses, on free ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from persist_rt import services

REPO = Path(__file__).resolve().parents[2]
FIXTURES = "tests/runtime/fixture_nodes.py"
DEADLINE_S = 15.0


def eventually(condition: Callable[[], Any], timeout: float = DEADLINE_S, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (services.ServiceTimeout, services.ServiceError, KeyError, TypeError) as exc:
            last_error = exc
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float = DEADLINE_S) -> int:
        return self.popen.wait(timeout)


@dataclass
class Graph:
    """Processes of one test; everything still running is killed at the end."""

    tmp: Path
    procs: list[Proc] = field(default_factory=list)
    registry: str = ""

    def _spawn(self, name: str, args: list[str], env_extra: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": str(REPO), "PERSIST_LOG_LEVEL": "warning", **(env_extra or {})}
        with open(log, "ab") as out:
            popen = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                     env=env)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_registry(self, lease_s: float = 1.5, bind: str = "tcp://127.0.0.1:0",
                       env: dict[str, str] | None = None) -> Proc:
        address_file = self.tmp / f"registry-{len(self.procs)}.addr"
        proc = self._spawn("registry", ["-m", "persist_rt.registry", "--bind", bind, "--lease", str(lease_s),
                                        "--address-file", str(address_file)], env)
        eventually(lambda: address_file.exists() and address_file.read_text().strip(), what="registry address")
        self.registry = address_file.read_text().strip()
        return proc

    def start_node(self, cls: str, name: str, params: dict[str, Any] | None = None,
                   qos: dict[str, str] | None = None, env: dict[str, str] | None = None,
                   busy_poll_us: str = "0") -> Proc:
        return self._spawn(name, ["-m", "persist_rt.run", "--kind", f"{FIXTURES}:{cls}", "--name", name,
                                  "--registry", self.registry, "--params", json.dumps(params or {}),
                                  "--qos", json.dumps(qos or {}), "--busy-poll-us", busy_poll_us], env)

    def reg(self, service: str, **args: Any) -> Any:
        return services.call(self.registry, service, args, timeout=2.0)

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["name"]: n for n in self.reg("nodes")}

    def endpoint(self, name: str) -> str:
        """The service endpoint of a node, once it has registered."""
        return eventually(lambda: self.nodes().get(name, {}).get("endpoints", {}).get("service"),
                          what=f"node {name} to register")

    def call(self, node: str, service: str, /, timeout: float = 3.0, **args: Any) -> Any:
        return services.call(self.endpoint(node), service, args, timeout=timeout)

    def stats(self, name: str) -> dict[str, Any]:
        return self.call(name, "stats")

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[Graph]:
    g = Graph(tmp_path)
    try:
        yield g
    finally:
        g.close()
        for proc in g.procs:  # shown only when the test failed
            print(f"----- {proc.name} (rc={proc.popen.returncode}) -----\n{proc.output()[-3000:]}")
