"""The learner stages small transition batches: none is lost, and every one is in the replay buffer before an update."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.learner.node import LearnerNode
from protocols import TransitionBatch

OBS_DIM, ACT_DIM = 5, 2


def transitions(step: int, arenas: int = 1, obs_dim: int = OBS_DIM) -> TransitionBatch:
    rng = np.random.default_rng(step)
    rows = lambda *shape: rng.uniform(-1, 1, (arenas, *shape)).astype(np.float32)  # noqa: E731
    return TransitionBatch(step=step, obs=rows(obs_dim), actions=rows(ACT_DIM), reward=rows(), reward_task=rows(),
                           reward_homeo=rows(), next_obs=rows(obs_dim), terminated=np.zeros(arenas, bool),
                           truncated=np.zeros(arenas, bool))


@pytest.fixture
def learner() -> LearnerNode:
    node = LearnerNode("learner", params={"sac": {"learning_starts": 40, "batch_size": 8, "utd_ratio": 1.0,
                                                  "hidden": [16, 16]}, "device": "cpu", "stage_rows": 16})
    node.transition("inactive")
    yield node
    node.close()


def test_staged_transitions_reach_the_replay_buffer_in_order_and_before_any_update(learner: LearnerNode) -> None:
    sent = [transitions(step) for step in range(39)]
    for msg in sent:
        learner.on_transitions(msg)
    assert learner.algo.num_updates == 0
    assert len(learner.replay) == 32 and learner.staged_rows == 7  # two full writes of 16, seven rows waiting
    learner.on_transitions(transitions(39))  # learning starts: the staged rows go in first
    assert learner.algo.num_updates == 1 and learner.staged_rows == 0 and len(learner.replay) == 40
    stored = learner.replay._columns["obs"][:39].numpy()
    np.testing.assert_array_equal(stored, np.concatenate([m.obs for m in sent]))


def test_a_checkpoint_writes_what_is_staged_and_a_mismatched_batch_is_refused_alone(learner: LearnerNode) -> None:
    learner.on_transitions(transitions(0, arenas=3))
    with pytest.raises(ValueError, match="obs_dim"):
        learner.on_transitions(transitions(1, obs_dim=OBS_DIM + 1))
    assert learner.staged_rows == 3 and learner.transitions_seen == 3
    learner.store_staged()
    assert len(learner.replay) == 3 and not learner.staged
