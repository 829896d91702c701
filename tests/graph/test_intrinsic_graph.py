"""The main job with CVaR-SAC and an intrinsic reward (empowerment) together, and with the planning agent (mpc):
each runs in the real graph, its summary keeps consistent books and records the new configuration, and the
intrinsic term is in telemetry. (Every intrinsic method trains, reports and resumes in the learner node itself:
tests/graph/test_learner_intrinsic.py.)"""

from __future__ import annotations

import math
from pathlib import Path

from nodes.telemetry.history import load_history
from tests.graph.conftest import LiveRun, launch_single_agent

STEPS = 2000  # 500 steps of 4 arenas: the learner (learning_starts 200) updates while the env still trains
MPC_STEPS = 400  # the planner learns nothing: a few steps show it acts in the graph and keeps the books
NO_EVAL = ("--arg", "eval_episodes=0")  # training alone: the evaluations are the full run's test (test_full_run.py)


def run(tmp_path: Path, launched: list[LiveRun], steps: int, *args: str) -> dict:  # type: ignore[type-arg]
    tmp_path.mkdir()
    live = launch_single_agent(tmp_path, "--arg", f"steps={steps}", *NO_EVAL, *args)
    launched.append(live)
    assert live.wait_exit() == 0
    summary = live.summary()
    assert summary["complete"] is True and summary["env_steps"] == steps
    assert summary["train"]["executed_steps"] + summary["train"]["fallback_steps"] == summary["env_steps"]
    return summary


def test_intrinsic_terms_and_the_new_agents_run_in_the_graph(tmp_path: Path, launched: list[LiveRun]) -> None:
    # the risk-aware agent with the costliest intrinsic term: CVaR-SAC's distributional learner and empowerment
    summary = run(tmp_path / "cvar_empowerment", launched, STEPS, "--arg", "agent=cvar_sac", "--arg", "cvar_alpha=0.25",
                  "--arg", "intrinsic=empowerment", "--arg", "lambda_intr=0.2")
    assert summary["config"] == {"agent": "cvar_sac", "intrinsic": "empowerment", "lambda_intr": 0.2}
    assert math.isfinite(summary["train"]["intrinsic_mean"]) and summary["train"]["intrinsic_mean"] > 0
    assert summary["train"]["violations_executed"] == 0
    history = load_history(launched[-1].run_dir / "metrics.jsonl")
    for name in ("intrinsic.mean", "intrinsic.p95", "intrinsic.share", "intrinsic.model_loss"):
        assert math.isfinite(history[("learner", name)].v[-1]), name

    summary = run(tmp_path / "mpc", launched, MPC_STEPS, "--arg", "agent=mpc", "--set", "agent.mpc_population=16",
                  "--set", "agent.mpc_iterations=2")
    assert summary["config"] == {"agent": "mpc", "intrinsic": "none", "lambda_intr": 0.1}
    assert summary["train"]["violations_executed"] == 0
    assert summary["train"]["intrinsic_mean"] == 0.0
