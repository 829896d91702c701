"""The agent keeps learner policies at a spacing, lists them, and switches to one by version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nodes.agent.node import AgentNode
from nodes.sac.policy_file import load_policy
from tests.sac.test_policy_file import make_policy


@pytest.fixture
def agent() -> Iterator[AgentNode]:
    node = AgentNode("agent", params={"keep_every": 100, "keep_policies": 2})
    node.transition("inactive")
    yield node
    node.close()


def test_kept_policies_follow_the_spacing_and_the_bound(agent: AgentNode) -> None:
    for version in (50, 100, 150, 230, 260, 300):
        agent.install(make_policy(version=version), "learner")
    # kept: 50, 150 (>= 50 + 100), 260 (>= 150 + 100); the bound of 2 drops 50; 300 is the newest weights
    assert agent.kept_versions() == [150, 260, 300]
    assert agent.describe_policy()["version"] == 300


def test_use_switches_to_a_kept_version_and_back_to_the_newest(agent: AgentNode) -> None:
    for version in (100, 200, 250):
        agent.install(make_policy(version=version), "learner")
    obs = np.zeros((3, 24), np.float32)
    result = agent.svc_use({"version": 100})
    assert result == {"old_version": 250, "new_version": 100, "source": "test"}
    assert agent.follow_learner is False  # the learner's next weights must not replace the choice
    assert agent.actor.act(obs, deterministic=True).shape == (3, 2)
    assert agent.svc_use({"version": 250})["new_version"] == 250  # the newest stays at hand after a switch
    assert agent.kept_versions() == [100, 200, 250]


def test_use_refuses_an_unknown_version_by_name_and_keeps_the_acting_policy(agent: AgentNode) -> None:
    agent.install(make_policy(version=100), "learner")
    for bad in (7, "100", True, None):
        with pytest.raises(ValueError, match="version"):
            agent.svc_use({"version": bad})
    assert agent.describe_policy()["version"] == 100


def test_save_writes_the_acting_policy_as_a_file_the_agent_loads(agent: AgentNode, tmp_path: Path) -> None:
    for bad in ({}, {"path": ""}, {"path": 3}):
        with pytest.raises(ValueError, match="path"):
            agent.svc_save(bad)
    with pytest.raises(ValueError, match="no policy"):  # nothing acts but uniform noise yet
        agent.svc_save({"path": str(tmp_path / "p.safetensors")})
    for version in (100, 200):
        agent.install(make_policy(version=version), "learner")
    agent.svc_use({"version": 100})
    saved = agent.svc_save({"path": str(tmp_path / "p.safetensors")})
    assert saved["version"] == 100
    policy = load_policy(saved["path"])
    assert policy.version == 100 and policy.spec == agent.policy.spec
    assert all(np.array_equal(policy.tensors[k], agent.policy.tensors[k]) for k in policy.tensors)
