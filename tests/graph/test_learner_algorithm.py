"""The learner picks its algorithm by name: cvar_sac trains CVaR-SAC and checkpoints it; an unknown name is refused."""

from __future__ import annotations

import pytest

from nodes.learner.node import LearnerNode
from nodes.sac.cvar_sac import CVaRSAC
from persist_rt.params import ParamError
from tests.graph.test_learner_staging import transitions

PARAMS = {"sac": {"learning_starts": 8, "batch_size": 8, "utd_ratio": 1.0, "hidden": [16, 16]}, "device": "cpu",
          "stage_rows": 4}


def test_cvar_sac_is_selected_by_name_and_trains(tmp_path) -> None:  # type: ignore[no-untyped-def]
    node = LearnerNode("learner", params={**PARAMS, "algorithm": "cvar_sac", "cvar_sac": {"cvar_alpha": 0.25, "n_quantiles": 8}})
    node.transition("inactive")
    try:
        for step in range(12):
            node.on_transitions(transitions(step))
        assert isinstance(node.algo, CVaRSAC) and node.algo.num_updates > 0
        assert node.algo.config.cvar_alpha == 0.25 and node.algo.critic.q1[-1].out_features == 8
        path = node.algo.checkpoint(tmp_path / "learner.safetensors")
    finally:
        node.close()
    again = CVaRSAC(node.algo.actor_spec.obs_dim, node.algo.actor_spec.act_dim, node.algo.config)
    again.resume(path)
    assert again.num_updates == node.algo.num_updates


def test_an_unknown_algorithm_is_refused_by_name() -> None:
    with pytest.raises(ParamError, match="algorithm"):
        LearnerNode("learner", params={**PARAMS, "algorithm": "ppo"})
