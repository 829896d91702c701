"""Kill -9 of the shield mid-run: the env falls back on its deadline, the respawned shield takes over, Ctrl-C ends it.

The env's declared fallback is the shield's backup policy, so the arenas the killed shield left certified are still
certified when the new shield takes over: no violation is possible, by construction, not by luck."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from nodes.telemetry.history import load_history
from tests.graph.conftest import LiveRun, launch_single_agent, read_reports
from tests.launch.conftest import wait_for

KILL_AFTER_STEPS = 400
# A respawned shield can answer within a 1 s deadline, and then no step falls back: a deadline shorter than any
# respawn (the supervisor alone waits 0.2 s) makes the fallback certain. A budget the test never reaches keeps
# the run in training until the new shield has taken over, however fast the machine.
RUN_ARGS = ("--arg", "steps=1000000", "--set", "env.deadline_s=0.1")


def executed_so_far(run: LiveRun) -> float:
    """Training arena-steps that executed the shield's action (the env's books: steps - fallback)."""
    gauges = run.stats("env")["gauges"]
    return gauges["progress.steps"] - gauges["fallback_steps"]


def test_shield_killed_mid_run(tmp_path: Path, launched: list[LiveRun], record_property: pytest.RecordProperty) -> None:
    run = launch_single_agent(tmp_path, *RUN_ARGS)
    launched.append(run)
    wait_for("training under way", lambda: run.metric_above("env", "progress.steps", KILL_AFTER_STEPS), deadline_s=90)
    before = run.stats("env")
    fallback_before = before["gauges"]["fallback_steps"]
    misses_before = before["counters"].get("deadline_misses", 0)
    old = run.nodes()["shield"]
    os.kill(old["pid"], signal.SIGKILL)

    # No safe action comes: each step waits for its deadline, then the env's own fallback executes. Of two missed
    # deadlines at least one comes after the kill.
    wait_for("two missed deadlines", lambda: run.metric_above("env", "deadline_misses", misses_before + 1),
             deadline_s=30)
    wait_for("the env to fall back", lambda: run.metric_above("env", "fallback_steps", fallback_before), deadline_s=30)
    executed_without_shield = executed_so_far(run)

    def respawned() -> dict | None:
        node = run.nodes().get("shield")
        return node if node and node["pid"] != old["pid"] and node["state"] == "active" else None

    assert wait_for("the shield to respawn", respawned, deadline_s=60)["restarts"] == old["restarts"] + 1
    # its headline figures (interventions, gatekeeper backups, degradations per cause) show in `node list`
    status = wait_for("the shield's status in node list",
                      lambda: (run.nodes().get("shield") or {}).get("status"), deadline_s=30)
    assert {"interventions", "backup"} <= set(status)
    wait_for("the respawned shield to take over", lambda: executed_so_far(run) > executed_without_shield, deadline_s=60)
    assert run.stop() == 0

    summary = run.summary()
    train = summary["train"]
    record_property("train.violations_executed", train["violations_executed"])
    assert train["violations_executed"] == 0
    assert summary["complete"] is False and summary["env_steps"] > KILL_AFTER_STEPS  # stopped by Ctrl-C, in training
    assert train["executed_steps"] + train["fallback_steps"] == summary["env_steps"]
    assert train["fallback_steps"] > 0
    assert train["executed_steps"] > executed_without_shield  # the respawned shield took over again
    assert summary["launch"]["nodes"]["shield"]["restarts"] == 1
    uncertified = load_history(run.run_dir / "metrics.jsonl")[("shield", "gatekeeper.uncertified")].v
    assert len(uncertified) > 0 and max(uncertified) == 0  # neither shield met a state its backup could not certify
    read_reports(run)  # both shields' reports, every line whole
