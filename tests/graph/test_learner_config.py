"""The learner's hyperparameters have one home, its algorithm's config: what the launch file says is what it
trains with, field by field, and a running learner changes only the fields SAC reads on every update."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nodes.learner.node import LearnerNode
from nodes.sac.config import CVaRSACConfig, SACConfig
from persist_rt.launch import Overrides, load_launch
from persist_rt.params import ParamError
from tests.graph.test_learner_staging import transitions
from tests.launch.conftest import ROOT

SINGLE_AGENT = ROOT / "launch" / "single_agent.yaml"


def test_the_effective_config_is_the_launch_files() -> None:
    spec = load_launch(SINGLE_AGENT, Overrides(sets={"learner.sac.tau": "0.01", "learner.device": "cpu"}))
    node = LearnerNode("learner", params=spec.node("learner").params)
    try:
        assert node.config() == SACConfig(utd_ratio=0.25, gamma=0.98, tau=0.01, device="cpu")
    finally:
        node.close()
    spec = load_launch(SINGLE_AGENT, Overrides(args={"agent": "cvar_sac", "cvar_alpha": "0.25"}))
    node = LearnerNode("learner", params=spec.node("learner").params)
    try:
        assert node.config() == CVaRSACConfig(utd_ratio=0.25, gamma=0.98, cvar_alpha=0.25)
        node.set_param("cvar_sac.gamma", 0.9)  # cvar_sac's fields go over sac's
        assert node.config() == CVaRSACConfig(utd_ratio=0.25, gamma=0.9, cvar_alpha=0.25)
    finally:
        node.close()


def test_a_running_learner_changes_only_the_live_fields() -> None:
    node = LearnerNode("learner", params={"sac": {"learning_starts": 8, "batch_size": 8, "utd_ratio": 1.0,
                                                  "hidden": [16, 16]}, "device": "cpu", "stage_rows": 4})
    node.transition("inactive")
    try:
        for step in range(3):
            node.on_transitions(transitions(step))
        node.set_param("sac.batch_size", "4")
        assert node.algo.config == replace(node.config(), batch_size=4) and node.sac["hidden"] == [16, 16]
        with pytest.raises(ParamError, match=r"sac\.hidden: fixed once the networks are built"):
            node.set_param("sac.hidden", [32])
        with pytest.raises(ParamError, match=r"sac\.tau: must be in \(0, 1\]"):
            node.set_param("sac.tau", 5)
        assert node.algo.config.batch_size == 4 and node.sac["batch_size"] == 4
    finally:
        node.close()


def test_param_list_shows_every_field_of_the_config_over_its_defaults() -> None:
    """`persist param list learner` lists `sac` whole: the fields the launch file set, and every other with its
    default from SACConfig (not the bare mapping of overrides)."""
    declared = LearnerNode.__dict__["sac"]
    defaults = SACConfig()
    described = declared.describe()["default"]
    assert described["batch_size"] == defaults.batch_size and described["hidden"] == list(defaults.hidden)
    assert "device" not in described and "seed" not in described  # the learner's own parameters
    effective = declared.effective({"tau": 0.01})
    assert effective == {**described, "tau": 0.01}
    cvar = LearnerNode.__dict__["cvar_sac"].effective({})
    assert cvar == CVaRSACConfig.mapping_defaults() and set(cvar) > set(described)  # SAC's fields and its own
