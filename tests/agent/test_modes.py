"""The agent's modes: the random baseline draws from its own stream, so it is the same in every run of a seed."""

from __future__ import annotations

import numpy as np

from nodes.agent.node import AgentNode
from tests.sac.test_policy_file import make_policy


def random_evaluation(agent: AgentNode, obs: np.ndarray, steps: int = 3) -> list[np.ndarray]:
    agent.set_param("mode", "random")
    return [agent.propose(obs) for _ in range(steps)]


def test_every_random_evaluation_of_a_seed_draws_the_same_actions() -> None:
    obs = np.zeros((4, 24), np.float32)
    trained, fresh, other = (AgentNode(name, params={"seed": seed}) for name, seed in
                             (("trained", 3), ("fresh", 3), ("other", 4)))
    try:
        for agent in (trained, fresh, other):
            agent.transition("inactive")
        first = random_evaluation(trained, obs)
        trained.set_param("mode", "train")
        for _ in range(5):  # uniform exploration before the first weights, then the policy's noise
            trained.propose(obs)
        trained.install(make_policy(version=10), "learner")
        for _ in range(5):
            trained.propose(obs)
        again = random_evaluation(trained, obs)
        assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
        assert all(np.array_equal(a, b) for a, b in zip(first, random_evaluation(fresh, obs), strict=True))
        assert not np.array_equal(first[0], random_evaluation(other, obs)[0])  # the stream follows the seed
        assert all(a.shape == (4, 2) and a.dtype == np.float32 and np.abs(a).max() <= 1.0 for a in again)
    finally:
        for agent in (trained, fresh, other):
            agent.close()
