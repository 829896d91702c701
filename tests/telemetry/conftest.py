"""One live graph for the telemetry tests: registry, talker, two telemetry nodes and a real MQTT broker.

Started once per module (process start-up dominates the suite's time). External tools are
required, not optional: a missing `mosquitto` or `promtool` fails the tests with how to install it.
"""

from __future__ import annotations

import json
import shutil
import socket
import string
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.conftest import REPO, Graph, Proc, eventually

RUN_ID = "telemetry-test"
OPS = REPO / "ops"


def require_tool(name: str) -> str:
    """The tool's path; fails (never skips) when it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if path is None:
        pytest.fail(f"`{name}` is not installed: run `make setup` "
                    f"(or `apt-get install -y mosquitto prometheus`, which ships promtool)", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TelemetryGraph(Graph):
    def start_kind(self, kind: str, name: str, params: dict[str, Any] | None = None,
                   run_dir: Path | None = None) -> Proc:
        args = ["-m", "persist_rt.run", "--kind", kind, "--name", name, "--registry", self.registry,
                "--params", json.dumps(params or {})]
        if run_dir is not None:
            args += ["--run-dir", str(run_dir)]
        return self._spawn(name, args)

    def start_broker(self, port: int) -> Proc:
        template = string.Template((OPS / "mosquitto" / "mosquitto.conf").read_text())
        conf = self.tmp / "mosquitto.conf"
        conf.write_text(template.substitute(port=port, bind_address="127.0.0.1"))
        log = self.tmp / "mosquitto.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen([require_tool("mosquitto"), "-c", str(conf)], stdout=out,
                                     stderr=subprocess.STDOUT)
        proc = Proc("mosquitto", popen, log)
        self.procs.append(proc)

        def accepting() -> bool:
            assert popen.poll() is None, f"mosquitto exited: {log.read_text()}"
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        eventually(accepting, what="mosquitto to accept connections")
        return proc


@dataclass
class Live:
    graph: TelemetryGraph
    run_dir: Path
    file_sd_dir: Path
    broker_port: int
    telemetry: Proc
    lonely: Proc  # a telemetry node whose broker is not there

    def address(self, node: str = "telemetry") -> dict[str, Any]:
        return self.graph.call(node, "telemetry.address")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("telemetry")
    graph = TelemetryGraph(tmp)
    try:
        broker_port = free_port()
        graph.start_broker(broker_port)
        graph.start_registry(lease_s=3.0)
        graph.start_kind("talker", "t", {"rate_hz": 20.0})
        graph.start_kind("tests/telemetry/fixture_nodes.py:Reporter", "reporter")
        run_dir = tmp / "runs" / RUN_ID
        file_sd_dir = tmp / "prometheus" / "targets"
        telemetry = graph.start_kind("telemetry", "telemetry", {
            "mqtt_host": "127.0.0.1", "mqtt_port": broker_port, "flush_period_s": 1.0,
            "file_sd_dir": str(file_sd_dir), "run_id": RUN_ID}, run_dir=run_dir)
        lonely = graph.start_kind("telemetry", "telemetry_lonely", {
            "mqtt_host": "127.0.0.1", "mqtt_port": free_port(), "history_file": "", "run_id": RUN_ID})
        yield Live(graph, run_dir, file_sd_dir, broker_port, telemetry, lonely)
    finally:
        graph.close()
        for proc in graph.procs:
            print(f"----- {proc.name} (rc={proc.popen.returncode}) -----\n{proc.output()[-3000:]}")


def persist_telemetry() -> list[str]:
    """`persist telemetry` as a process, through the main CLI."""
    return [sys.executable, "-m", "persist_rt.cli", "telemetry"]
