"""The multi-agent graph end to end: `persist launch launch/multi_agent.yaml`, short, with consistent books."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.launch.conftest import ROOT, run_processes, start_launch

STEPS = 100


def test_a_short_multi_agent_run_has_no_collision_and_consistent_books(tmp_path: Path) -> None:
    run_dir = tmp_path / f"run-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "launch.log"
    proc = start_launch(str(ROOT / "launch" / "multi_agent.yaml"), "--run-dir", str(run_dir), "--arg",
                        f"steps={STEPS}", "--arg", "agents=4", cwd=tmp_path, log=log)  # fmt: skip
    try:
        assert proc.wait(timeout=150) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] == STEPS and summary["agents"] == 4
    assert summary["wall_s"] > 0 and summary["env_steps_per_s"] == pytest.approx(STEPS / summary["wall_s"], rel=0.01)
    per_agent = summary["per_agent"]
    assert sorted(per_agent) == [f"agent_{j}" for j in range(4)]
    for key in ("collisions", "violations_executed", "deaths"):
        book = "violations" if key == "violations_executed" else key
        assert summary["train"][key] == sum(agent[book] for agent in per_agent.values())
    assert summary["train"]["collisions"] == 0 and summary["train"]["violations_executed"] == 0
    assert all(a["contended_steps"] <= a["served_steps"] <= STEPS for a in per_agent.values())
    assert 0.0 < summary["allocator"]["jain_index"] <= 1.0
    assert summary["launch"]["nodes"]["coupler"]["restarts"] == 0
    coupler = summary["coupler"]  # the env's view of action/safe and the coupler's own counts
    assert set(coupler) == {"interventions", "fallback", "infeasible", "deadlocks"}
    assert all(isinstance(v, int) and v >= 0 for v in coupler.values())
    assert run_processes(run_dir.name) == [], "processes of the run outlived it"
