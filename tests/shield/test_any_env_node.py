"""The shield node for any Box env (kind gym_shield) on Pendulum-v1: a description that fails is counted and named
while the node goes on deciding, on the backup; a proposal of the wrong width is refused and counted; bypass."""

from __future__ import annotations

import math

import numpy as np

from nodes.shield.any_env_node import AnyEnvShieldNode
from protocols import Observation, ProposedAction

ARENAS = 2
PENDULUM = {"write_reports": False, "env_id": "Pendulum-v1", "filter": "search",
            "model": "nodes.env.pendulum_safety:speed_model", "backup": "nodes.env.pendulum_safety:brake"}


def feed(node: AnyEnvShieldNode, step: int, width: int = 1) -> None:
    theta, speed = 2.5, 5.5  # falling fast towards the bottom: accelerating further breaks the limit
    obs = np.tile(np.array([math.cos(theta), math.sin(theta), speed], np.float32), (ARENAS, 1))
    node.on_obs(Observation(step=step, obs=obs, positions=np.zeros((ARENAS, 2)),
                            episode_step=np.full(ARENAS, step, np.int64), internal=None))
    node.on_proposal(ProposedAction(step=step, actions=np.ones((ARENAS, width), np.float32)))


def test_the_model_filters_a_pendulum_that_would_break_its_limit() -> None:
    node = AnyEnvShieldNode("shield", params=PENDULUM)
    try:
        node.transition("inactive")
        for step in range(3):
            feed(node, step)
        assert node.decided_step == 2 and node.counters.get("interventions") == 3 * ARENAS
        assert node.core.counts["mode.filtered"] == 3 * ARENAS and node.core.counts["degraded.infeasible"] == 0
    finally:
        node.close()


def test_a_failing_model_is_counted_and_named_and_the_backup_acts() -> None:
    node = AnyEnvShieldNode("shield", params={**PENDULUM, "model": "tests/shield/bad_descriptions.py:model_raises"})
    try:
        node.transition("inactive")
        for step in range(3):
            feed(node, step)
        assert node.decided_step == 2  # still deciding
        counts = node.core.counts
        assert counts["description_errors.model"] == counts["degraded.bad_description"] == 3 * ARENAS
        assert counts["backup_actions"] == 3 * ARENAS and node.counters.get("interventions") == 3 * ARENAS
        assert "tests/shield/bad_descriptions.py:model_raises: raised KeyError" in node.core.errors[-1]
        node.refresh()
        assert node.status["degraded.bad_description"] == 3 * ARENAS
    finally:
        node.close()


def test_a_proposal_of_the_wrong_width_is_refused_and_the_step_falls_back() -> None:
    node = AnyEnvShieldNode("shield", params=PENDULUM)
    try:
        node.transition("inactive")
        feed(node, 0, width=2)
        assert node.counters.get("rejected.proposal_shape") == 1
        assert node.core.counts["degraded.stale"] == ARENAS and node.core.counts["backup_actions"] == ARENAS
    finally:
        node.close()


def test_bypass_forwards_the_proposals_unchanged() -> None:
    node = AnyEnvShieldNode("shield", params={**PENDULUM, "enabled": False})
    try:
        node.transition("inactive")
        feed(node, 0)
        assert node.counters.get("bypassed_steps") == ARENAS and node.core.counts["decisions"] == 0
    finally:
        node.close()
