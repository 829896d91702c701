"""The tuned arena: the scripted station-seeking controller survives, a uniform-random policy does not."""

import numpy as np

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig
from nodes.env.scripted import seek_station_policy

CFG = GridLifeConfig()


def test_scripted_controller_survives_the_cap_without_violations() -> None:
    batch = GridLifeBatch(CFG, num_envs=8)
    batch.reset(seed=11)
    for _ in range(CFG.episode_cap):
        actions = seek_station_policy(batch.positions, batch.internal, batch.tokens, CFG, batch.layout)
        result = batch.step(actions)
        assert not result.violation.any()
    assert result.truncated.all()


def test_uniform_random_policy_dies_well_before_the_cap() -> None:
    num_envs = 32
    batch = GridLifeBatch(CFG, num_envs=num_envs)
    batch.reset(seed=11)
    rng = np.random.default_rng(0)
    lengths = np.zeros(num_envs)
    alive = np.ones(num_envs, dtype=bool)
    for _ in range(CFG.episode_cap):
        result = batch.step(rng.uniform(-1, 1, size=(num_envs, 2)).astype(np.float32))
        lengths[alive & result.done] = result.episode_steps[alive & result.done]
        alive &= ~result.done
    lengths[alive] = CFG.episode_cap
    assert lengths.mean() < 0.3 * CFG.episode_cap
