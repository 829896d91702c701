"""The main job's arguments agent, intrinsic and lambda_intr reach the nodes; bad values are refused by name."""

from __future__ import annotations

import pytest

from persist_rt.launch import LaunchError, Overrides, load_launch
from tests.launch.conftest import ROOT

PATH = ROOT / "launch" / "single_agent.yaml"


def test_agent_and_intrinsic_reach_the_learner() -> None:
    spec = load_launch(PATH, Overrides(args={"agent": "cvar_sac", "intrinsic": "rnd", "lambda_intr": "0.3"}))
    learner = spec.node("learner").params
    assert (learner["algorithm"], learner["intrinsic"], learner["lambda_intr"]) == ("cvar_sac", "rnd", 0.3)
    assert spec.node("env").params["learner_node"] == "learner"  # which puts them into summary.json
    default = load_launch(PATH).node("learner").params
    assert (default["algorithm"], default["intrinsic"]) == ("sac", "none")


@pytest.mark.parametrize(("arg", "value", "named"), [("agent", "ppo", "agent"), ("intrinsic", "curiosity", "intrinsic"),
                                                      ("lambda_intr", "-1", "lambda_intr")])
def test_bad_values_are_refused_by_name(arg: str, value: str, named: str) -> None:
    with pytest.raises(LaunchError) as info:
        load_launch(PATH, Overrides(args={arg: value}))
    assert named in str(info.value)


def test_agent_mpc_reaches_the_agent_node() -> None:
    spec = load_launch(PATH, Overrides(args={"agent": "mpc"}))
    assert spec.node("agent").params["algorithm"] == spec.node("learner").params["algorithm"] == "mpc"
