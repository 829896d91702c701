"""Kill -9 of the CBF coupler, then of the resource allocator, mid-run in the multi-agent graph: the env falls back
(a stop for every body on a missed action, equal shares on missed grants), counts it, each node respawns and takes
over again, and no step executes a collision or a violation."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

from tests.graph.conftest import LiveRun
from tests.launch.conftest import ROOT, run_processes, start_launch, wait_for

STEPS = 4000  # body-steps (1,000 env steps of 4 bodies); the run ends by itself at its budget, without evaluation


def respawned(run: LiveRun, name: str, old_pid: int) -> dict | None:  # type: ignore[type-arg]
    node = run.nodes().get(name)
    return node if node and node["pid"] != old_pid and node["state"] == "active" else None


def test_coupler_and_allocator_killed_mid_run(tmp_path: Path) -> None:
    run_dir = tmp_path / f"run-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "launch.log"
    run = LiveRun(start_launch(str(ROOT / "launch" / "multi_agent.yaml"), "--run-dir", str(run_dir), "--arg",
                               f"steps={STEPS}", "--arg", "agents=4", "--arg", "bodies=scripted", "--arg",
                               "eval_episodes=0", cwd=tmp_path, log=log), run_dir, log)
    try:
        run.registry = wait_for("the registry address", lambda: (run_dir / "registry").exists()
                                and (run_dir / "registry").read_text().strip(), deadline_s=30.0)
        wait_for("steps under way", lambda: run.metric_above("env", "steps", 50), deadline_s=90)

        coupler = run.nodes()["coupler"]
        before = run.metric("env", "fallback_steps") or 0.0
        os.kill(coupler["pid"], signal.SIGKILL)
        wait_for("the env's stop fallback", lambda: run.metric_above("env", "fallback_steps", before), deadline_s=30)
        assert wait_for("the coupler to respawn", lambda: respawned(run, "coupler", coupler["pid"]),
                        deadline_s=60)["restarts"] == coupler["restarts"] + 1
        fallback = run.metric("env", "fallback_steps") or 0.0
        steps = run.metric("env", "steps") or 0.0
        # the respawned coupler's actions execute again: steps go on faster than one per missed deadline
        wait_for("the respawned coupler to take over", lambda: run.metric_above("env", "steps", steps + 20 +
                 ((run.metric("env", "fallback_steps") or fallback) - fallback)), deadline_s=60)

        allocator = run.nodes()["allocator"]
        before = run.metric("env", "allocator.fallback_steps") or 0.0
        os.kill(allocator["pid"], signal.SIGKILL)
        wait_for("equal shares while the allocator is away",
                 lambda: run.metric_above("env", "allocator.fallback_steps", before), deadline_s=30)
        assert wait_for("the allocator to respawn", lambda: respawned(run, "allocator", allocator["pid"]),
                        deadline_s=60)["restarts"] == allocator["restarts"] + 1
        assert run.wait_exit(240.0) == 0
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    summary = run.summary()
    assert summary["env_steps"] == STEPS
    assert summary["train"]["collisions"] == 0 and summary["train"]["violations_executed"] == 0
    assert summary["train"]["fallback_steps"] > 0 and summary["allocator"]["fallback_steps"] > 0
    assert summary["launch"]["nodes"]["coupler"]["restarts"] == 1
    assert summary["launch"]["nodes"]["allocator"]["restarts"] == 1
    assert run_processes(run_dir.name) == [], "processes of the run outlived it"
