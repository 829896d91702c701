"""`persist new` offers the intrinsic reward, its weight and the agent kind; a bad value is refused by its flag."""

from __future__ import annotations

from pathlib import Path

from persist_rt.launch import load_launch
from tests.launch.conftest import persist

CUSTOM = ("new", "-y", "-t", "custom", "--features", "env,shield,agent,learner")


def test_intrinsic_weight_and_agent_reach_the_nodes(tmp_path: Path) -> None:
    out_file = tmp_path / "exp.yaml"
    out = persist(*CUSTOM, "--intrinsic", "rnd", "--lambda-intr", "0.2", "--agent", "cvar_sac", "-o", str(out_file),
                  "--no-launch", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    spec = load_launch(out_file)
    learner = spec.node("learner").params
    assert (learner["intrinsic"], learner["lambda_intr"], learner["algorithm"]) == ("rnd", 0.2, "cvar_sac")
    assert spec.node("agent").params["algorithm"] == "cvar_sac"


def test_bad_values_are_refused_by_flag(tmp_path: Path) -> None:
    for flag, value in (("--intrinsic", "curiosity"), ("--lambda-intr", "-1"), ("--agent", "ppo")):
        out = persist(*CUSTOM, flag, value, "-o", str(tmp_path / "e.yaml"), cwd=tmp_path)
        assert out.returncode == 2 and flag in out.stderr, (flag, out.stderr)
    assert not list(tmp_path.glob("*.yaml"))
