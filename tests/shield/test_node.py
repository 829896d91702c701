"""The shield node's bypass switch: `bypass` (per phase) and `enabled: false` (per run) both turn it on, and a
phase clearing `bypass` does not bring in a shield the run left out."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.shield.node import ShieldNode
from protocols import Observation, ProposedAction

ARENAS = 2


def feed(node: ShieldNode, step: int) -> None:
    """One step's observation and proposal, as they arrive from the env and the agent."""
    positions = np.array([[5.0, 9.0], [3.0, 3.0]])
    internal = np.array([[0.9, 0.2, 0.9], [0.8, 0.3, 0.9]])
    node.on_obs(Observation(step=step, obs=np.zeros((ARENAS, 4), np.float32), positions=positions,
                            episode_step=np.full(ARENAS, step, np.int64), internal=internal))
    node.on_proposal(ProposedAction(step=step, actions=np.full((ARENAS, 2), 0.3, np.float32)))


@pytest.mark.parametrize(("enabled", "bypass", "bypassed"),
                         [(True, False, False), (True, True, True), (False, False, True), (False, True, True)])
def test_bypass_is_on_for_the_phase_or_for_the_run(enabled: bool, bypass: bool, bypassed: bool) -> None:
    node = ShieldNode("shield", params={"write_reports": False, "enabled": enabled})
    try:
        node.transition("inactive")
        node.set_param("bypass", not bypass)  # what the previous phase left
        node.set_param("bypass", bypass)  # as the experiment protocol sets it for this one
        assert node.bypassed is bypassed
        for step in range(3):
            feed(node, step)
        assert node.decided_step == 2
        assert node.counters.get("bypassed_steps", 0) == (3 * ARENAS if bypassed else 0)
        assert node.core.counts["decisions"] == (0 if bypassed else 3 * ARENAS)
    finally:
        node.close()


def test_with_use_estimate_an_observation_that_shows_the_truth_is_certified_on_the_truth() -> None:
    # a launch that asks the shield for the estimator's belief but leaves the env's internal variables visible:
    # the shield certifies on what the env shows (it waits for no estimate) and counts the steps
    node = ShieldNode("shield", params={"write_reports": False, "use_estimate": True})
    try:
        node.transition("inactive")
        for step in range(3):
            feed(node, step)
        assert node.decided_step == 2
        assert node.counters.get("belief.truth_shown_steps") == 3
        assert not node.counters.get("missing_estimate")
    finally:
        node.close()
