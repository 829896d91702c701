"""The multi-agent graph end to end with learning bodies: `persist launch launch/multi_agent.yaml`, short. It
trains (the learner's weights reach the agent), runs every evaluation phase of the experiment protocol and writes
one summary.json with consistent books and the multi-agent keys."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.launch.conftest import ROOT, run_processes, start_launch

AGENTS = 4
STEPS = 800  # body-steps: 200 env steps of 4 bodies
CAP = 30  # evaluation episodes: short, so the four evaluation phases take a few seconds


def test_learning_bodies_train_evaluate_and_keep_consistent_books(tmp_path: Path) -> None:
    run_dir = tmp_path / f"run-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "launch.log"
    proc = start_launch(str(ROOT / "launch" / "multi_agent.yaml"), "--run-dir", str(run_dir),
                        "--arg", f"steps={STEPS}", "--arg", f"agents={AGENTS}", "--arg", "eval_episodes=1",
                        "--arg", f"episode_cap={CAP}", "--arg", "train_cap=100",
                        "--set", "learner.sac.learning_starts=256", "--set", "learner.sac.publish_period=20",
                        cwd=tmp_path, log=log)  # fmt: skip
    try:
        assert proc.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] and summary["agents"] == AGENTS and summary["env_steps"] == STEPS
    train = summary["train"]
    assert train["executed_steps"] + train["fallback_steps"] == STEPS  # every body-step booked once
    per_agent = summary["per_agent"]
    assert sorted(per_agent) == [f"agent_{j}" for j in range(AGENTS)]
    for key, book in (("collisions", "collisions"), ("violations_executed", "violations"), ("deaths", "deaths")):
        assert train[key] == sum(agent[book] for agent in per_agent.values())
    assert train["collisions"] == 0  # the coupler is on in training
    assert all(a["contended_steps"] <= a["served_steps"] <= STEPS // AGENTS for a in per_agent.values())
    assert 0.0 < summary["allocator"]["jain_index"] <= 1.0
    assert set(summary["coupler"]) == {"interventions", "fallback", "infeasible", "deadlocks"}
    # trained: the learner's weights acted, and the evaluated policy was saved
    assert (run_dir / "policy.safetensors").exists()
    for phase in ("eval", "baseline_random", "baseline_scripted", "eval_shielded"):
        section = summary[phase]
        assert section["episodes"] == AGENTS, phase  # each body one episode in the one evaluation arena
        assert 0 < section["mean_survival_steps"] <= CAP, phase
        assert section["start_digest"] == summary["eval"]["start_digest"], phase  # the same arenas
    assert summary["launch"]["nodes"]["coupler"]["restarts"] == 0
    assert run_processes(run_dir.name) == [], "processes of the run outlived it"
