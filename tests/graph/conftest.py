"""The single-agent graph as real processes: `persist launch launch/single_agent.yaml` with small budgets."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from persist_rt import services
from tests.launch.conftest import ROOT, nodes_by_name, run_processes, start_launch, wait_for

SINGLE_AGENT = ROOT / "launch" / "single_agent.yaml"
# Small enough for the suite: 4 arenas, short episodes, 2 evaluation episodes, early learning.
SMALL = ("--arg", "arenas=4", "--arg", "eval_episodes=2", "--set", 'env.config={"episode_cap": 150}',
         "--set", "learner.sac.learning_starts=200", "--set", "learner.sac.batch_size=64",
         "--set", "learner.sac.publish_period=20")
LAUNCH_TIMEOUT_S = 120.0


@dataclass
class LiveRun:
    """One `persist launch` of the single-agent graph, seen through its run directory and registry."""

    proc: subprocess.Popen[bytes]
    run_dir: Path
    log: Path
    registry: str = ""

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def nodes(self) -> dict[str, dict[str, Any]]:
        """`persist node list --json`, by node name."""
        return nodes_by_name(self.registry)

    def stats(self, node: str) -> dict[str, Any]:
        """The node's own `stats` service (counters and gauges), asked directly: cheap enough to poll."""
        info = services.call(self.registry, "node", {"name": node}, timeout=2.0)
        return services.call(info["endpoints"]["service"], "stats", timeout=2.0)

    def metric(self, node: str, name: str) -> float | None:
        """A counter or gauge of a live node (0 when not set yet); None while the node is not reachable."""
        try:
            s = self.stats(node)
        except (services.ServiceError, services.ServiceTimeout, KeyError):
            return None  # not registered yet, or respawning
        return float(s["counters"].get(name, s["gauges"].get(name, 0)))

    def metric_above(self, node: str, name: str, floor: float) -> float | None:
        """The metric's value once it is above ``floor`` (for ``wait_for``), else None."""
        value = self.metric(node, name)
        return value if value is not None and value > floor else None

    def wait_exit(self, timeout: float = LAUNCH_TIMEOUT_S) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the launch did not end within {timeout:g} s\n{self.output()[-4000:]}") from None

    def stop(self) -> int:
        """Ctrl-C, as a user would; the supervisor stops every node within its deadline."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.wait_exit(60.0)

    def summary(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "summary.json").read_text())

    def log_events(self, node: str) -> list[dict[str, Any]]:
        """The node's structured log (``logs/<node>.jsonl``), one event per line."""
        path = self.run_dir / "logs" / f"{node}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_reports(run: LiveRun) -> list[dict[str, Any]]:
    """Every line of ``shield_reports.jsonl`` as JSON (a torn or garbled line fails the test)."""
    lines = (run.run_dir / "shield_reports.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def launch_single_agent(tmp: Path, *args: str) -> LiveRun:
    """Start the graph (``persist launch`` as a subprocess) and wait until its registry is up."""
    run_dir = tmp / f"run-{uuid.uuid4().hex[:8]}"  # unique: processes are found by their run id
    log = tmp / "launch.log"
    run = LiveRun(start_launch(str(SINGLE_AGENT), "--run-dir", str(run_dir), *SMALL, *args, cwd=tmp, log=log),
                  run_dir, log)
    run.registry = wait_for("the registry address", lambda: (run_dir / "registry").exists()
                            and (run_dir / "registry").read_text().strip(), deadline_s=30.0)
    return run


def finish(run: LiveRun) -> None:
    """Stop the run if it still runs, show its output (seen when the test failed), check nothing outlived it."""
    if run.proc.poll() is None:
        run.proc.send_signal(signal.SIGINT)
        try:
            run.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.proc.kill()
            run.proc.wait()
    print(f"----- persist launch (rc={run.proc.returncode}) -----\n{run.output()[-6000:]}")
    assert run_processes(run.run_dir.name) == [], "processes of the run outlived it"


@pytest.fixture
def launched() -> Iterator[list[LiveRun]]:
    """Runs a test starts; each is finished at the end of the test."""
    runs: list[LiveRun] = []
    try:
        yield runs
    finally:
        for run in runs:
            finish(run)
