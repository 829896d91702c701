"""The env kind `gym` through the graph: Pendulum-v1 with its speed constraint, violations counted by the env, kept
by the shield of kind `gym_shield` from the description in nodes/env/pendulum_safety.py."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from nodes.env.constraints import PENDULUM_SPEED_LIMIT
from nodes.env.gym_adapter import GymBatch
from nodes.env.node import scale_to_box
from tests.graph.conftest import LiveRun
from tests.launch.conftest import ROOT, start_launch, wait_for

GYM_PENDULUM = ROOT / "launch" / "gym_pendulum.yaml"
ARENAS, STEPS, SEED = 4, 400, 3
SPEC = "nodes.env.constraints:pendulum_speed"


def expected_violations() -> int:
    """The same training steps outside the graph: the agent's seeded uniform actions (it never gets weights
    in so few steps), scaled onto the torque box, counted where the next state breaks the speed limit."""
    rng = np.random.default_rng(SEED)
    sim = GymBatch("Pendulum-v1", ARENAS, SPEC)
    sim.reset(SEED)
    violations = 0
    for _ in range(STEPS // ARENAS):
        actions = rng.uniform(-1.0, 1.0, size=(ARENAS, 1)).astype(np.float32)
        result = sim.step(scale_to_box(actions, sim.action_space))
        assert (result.violation == (np.abs(result.next_obs[:, 2]) > PENDULUM_SPEED_LIMIT)).all()
        violations += int(result.violation.sum())
    sim.close()
    return violations


def test_pendulum_with_a_speed_constraint_through_the_graph(tmp_path: Path, launched: list[LiveRun]) -> None:
    run_dir = tmp_path / f"run-{uuid.uuid4().hex[:8]}"
    # a generous deadline: no step may fall back, so the executed actions are exactly the agent's
    proc = start_launch(str(GYM_PENDULUM), "--run-dir", str(run_dir), "--arg", f"steps={STEPS}",
                        "--arg", f"arenas={ARENAS}", "--arg", f"seed={SEED}", "--arg", "eval_episodes=2",
                        "--set", "env.deadline_s=30", cwd=tmp_path, log=tmp_path / "launch.log")
    run = LiveRun(proc, run_dir, tmp_path / "launch.log")
    launched.append(run)
    run.registry = wait_for("the registry address", lambda: (run_dir / "registry").exists()
                            and (run_dir / "registry").read_text().strip(), deadline_s=30.0)
    assert run.wait_exit() == 0
    summary = run.summary()
    train = summary["train"]
    assert summary["complete"] is True and summary["env_id"] == "Pendulum-v1" and summary["constraint"] == SPEC
    assert summary["env_steps"] == STEPS and summary["episode_cap"] == 200
    # the same seeded proposals break the limit unshielded; through the shield none does
    assert train["executed_steps"] == STEPS and train["fallback_steps"] == 0
    assert train["violations_executed"] == 0 < expected_violations()
    assert train["shield_interventions"] > 0
    reports = [json.loads(line) for line in (run_dir / "shield_reports.jsonl").read_text().splitlines()]
    assert reports and {r["mode"] for r in reports} <= {"filtered", "fallback"}
    assert all(len(r["proposed"]) == len(r["safe"]) == 1 for r in reports)
    for phase in ("eval", "baseline_random", "eval_shielded"):
        assert summary[phase]["episodes"] == 2 and summary[phase]["mean_survival_steps"] == 200.0
    assert "mean_drive" not in summary["eval"]  # no homeostat outside GridLife
