"""`persist new` offers the intrinsic reward, its weight and the agent kind; a bad value is refused by its flag."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from persist_rt.cli.wizard import KNOBS, _draft_from_file
from persist_rt.launch import load_launch
from tests.launch.conftest import ROOT, persist

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
    out = persist(*CUSTOM, "--intrinsic", "curiosity", "-o", str(tmp_path / "e.yaml"), cwd=tmp_path)
    assert out.returncode == 2 and "--intrinsic" in out.stderr and "curiosity" in out.stderr, out.stderr
    assert not list(tmp_path.glob("*.yaml"))
    draft = _draft_from_file(ROOT / "launch" / "single_agent.yaml", {})  # the same check, in this process
    for key, value in (("lambda_intr", "-1"), ("agent", "ppo")):
        with pytest.raises(typer.BadParameter) as info:
            draft.set(next(k for k in KNOBS if k.key == key), value)
        assert info.value.param_hint == f"'--{key.replace('_', '-')}'"


def test_sac_knobs_set_fields_of_the_learners_config() -> None:
    draft = _draft_from_file(ROOT / "launch" / "single_agent.yaml", {})
    knob = {k.key: k for k in KNOBS}
    assert draft.current("sac.hidden") == [128, 128] and draft.current("sac.utd_ratio") == 0.25
    draft.set(knob["hidden"], "64,64")
    draft.set(knob["actor_lr"], "0.001")
    assert draft.spec.node("learner").params["sac"] == {"utd_ratio": 0.25, "gamma": 0.98, "hidden": [64, 64],
                                                        "actor_lr": 0.001}
    with pytest.raises(typer.BadParameter, match=r"sac\.publish_period: must be an integer >= 1") as info:
        draft.set(knob["publish_period"], "0")
    assert info.value.param_hint == "'--publish-period'"
