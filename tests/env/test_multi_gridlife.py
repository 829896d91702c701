"""Multi-agent GridLife: separation, shared stations, determinism, agent types and PettingZoo's API test."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from nodes.env.gridlife import internal_step
from nodes.env.multi_gridlife import MultiGridLifeBatch, MultiGridLifeConfig, parallel_env

STILL = np.zeros((1, 2, 2))


def _two_in_refuel(**params: object) -> tuple[MultiGridLifeBatch, np.ndarray]:
    """Two bodies 0.5 m apart inside the first refuel station, half-full of energy."""
    batch = MultiGridLifeBatch(MultiGridLifeConfig.from_params({"num_agents": 2, **params}))
    batch.reset(seed=0)
    centre = batch.layout.stations("refuel")[0][0]
    internal = np.array([[[0.5, 0.4, 1.0], [0.5, 0.4, 1.0]]])
    batch.place(np.array([[centre - np.array([0.25, 0.0]), centre + np.array([0.25, 0.0])]]), internal)
    return batch, internal


def test_a_lone_body_follows_single_agent_gridlife() -> None:
    batch, internal = _two_in_refuel()
    batch.place(np.array([[batch.positions[0, 0], [9.9, 9.9]]]), internal)  # the second one leaves the station
    result = batch.step(STILL)
    single = internal_step(internal[0, 0], result.next_positions[0, 0], STILL[0, 0], batch.cfg.world, batch.layout)
    assert result.share[0].tolist() == [1.0, 0.0]
    np.testing.assert_array_equal(result.next_internal[0, 0], single)


def test_a_station_rate_is_shared_among_the_bodies_in_it() -> None:
    batch, internal = _two_in_refuel()
    world = batch.cfg.world
    result = batch.step(STILL)
    assert result.occupancy[0, result.station[0, 0]] == 2 and result.share[0].tolist() == [0.5, 0.5]
    expected = 0.5 - world.dt * world.k_basal + world.dt * world.rho_refuel * 0.5
    np.testing.assert_allclose(result.next_internal[0, :, 0], expected, rtol=0, atol=1e-15)
    # granted shares instead of equal ones; and a station of capacity 2 serves both at full rate
    batch.place(batch.positions.copy(), internal)
    granted = batch.step(STILL, shares=np.array([[0.8, 0.2]]))
    gains = granted.next_internal[0, :, 0] - (0.5 - world.dt * world.k_basal)
    np.testing.assert_allclose(gains, world.dt * world.rho_refuel * np.array([0.8, 0.2]), atol=1e-15)
    roomy, _ = _two_in_refuel(station_capacity=2.0)
    assert roomy.step(STILL).share[0].tolist() == [1.0, 1.0]


def test_grants_that_overbook_a_station_are_refused() -> None:
    batch, _ = _two_in_refuel()
    with pytest.raises(ValueError, match=r"station 0: grants sum to 1\.2"):
        batch.step(STILL, shares=np.array([[0.6, 0.6]]))
    with pytest.raises(ValueError, match="shares: arena 0, agent 1: nan"):
        batch.step(STILL, shares=np.array([[0.5, np.nan]]))


def test_closer_than_min_separation_is_a_violation_for_both() -> None:
    batch, _ = _two_in_refuel(min_separation=0.6)  # 0.5 m apart
    result = batch.step(STILL)
    assert result.collision[0].tolist() == [True, True] and result.violation[0].tolist() == [True, True]
    np.testing.assert_allclose(result.margins["separation"][0], -0.1, atol=1e-12)
    apart, _ = _two_in_refuel(min_separation=0.4)
    result = apart.step(STILL)
    assert not result.collision.any() and not result.violation.any()


def test_a_seed_fixes_the_trajectory_and_arenas_are_independent() -> None:
    actions = np.random.default_rng(1).uniform(-1, 1, size=(200, 3, 3, 2))

    def run(num_envs: int) -> np.ndarray:
        batch = MultiGridLifeBatch(MultiGridLifeConfig(num_agents=3), num_envs=num_envs)
        batch.reset(seed=7)
        return np.stack([np.concatenate([batch.step(a[:num_envs]).next_positions[:2], batch.internal[:2]], axis=-1)
                         for a in actions])  # fmt: skip

    first = run(2)
    np.testing.assert_array_equal(first, run(2))
    np.testing.assert_array_equal(first, run(3))  # arena i does not depend on how many arenas there are


def test_agent_types_differ_in_their_constants_and_are_checked() -> None:
    cfg = MultiGridLifeConfig.from_params({"num_agents": 2, "agent_types": [
        {"name": "base", "count": 1}, {"name": "fast", "count": 1, "vmax": 2.0, "k_basal": 0.06}]})  # fmt: skip
    batch = MultiGridLifeBatch(cfg)
    batch.reset(seed=0)
    batch.place(np.array([[[3.0, 3.0], [6.0, 6.0]]]), np.array([[[0.8, 0.4, 1.0], [0.8, 0.4, 1.0]]]))
    result = batch.step(np.array([[[1.0, 0.0], [1.0, 0.0]]]))
    moved = result.next_positions[0, :, 0] - [3.0, 6.0]
    np.testing.assert_allclose(moved, [0.1, 0.2], atol=1e-12)
    assert result.next_internal[0, 1, 0] < result.next_internal[0, 0, 0]  # the fast type drains faster
    with pytest.raises(ValueError, match="agent_types: counts sum to 1, but num_agents is 2"):
        MultiGridLifeConfig.from_params({"num_agents": 2, "agent_types": [{"name": "a", "count": 1}]})
    with pytest.raises(ValueError, match=r"agent_types\[0\]: unknown field\(s\) rho_refuel"):
        MultiGridLifeConfig.from_params({"num_agents": 1, "agent_types": [{"name": "a", "count": 1, "rho_refuel": 1}]})
    with pytest.raises(ValueError, match=r"agent_types \(a\): dt: one step at full speed"):
        MultiGridLifeConfig.from_params({"num_agents": 1, "agent_types": [{"name": "a", "count": 1, "vmax": 9.0}]})


def test_bad_actions_are_refused_by_arena_and_agent() -> None:
    batch, _ = _two_in_refuel()
    with pytest.raises(ValueError, match=r"arena 0, agent 1: action \[0.0, nan\] is not finite"):
        batch.step(np.array([[[0.0, 0.0], [0.0, np.nan]]]))
    with pytest.raises(ValueError, match=r"actions: expected shape \(1, 2, 2\)"):
        batch.step(np.zeros((2, 2)))


def test_parallel_env_passes_pettingzoos_api_test() -> None:
    env = parallel_env(num_agents=3, episode_cap=150)
    parallel_api_test(env, num_cycles=200)
    obs, _ = env.reset(seed=3)
    assert set(obs) == {"agent_0", "agent_1", "agent_2"} and env.observation_space("agent_0").contains(obs["agent_0"])
    with pytest.raises(ValueError, match="no live agent named agent_9"):
        env.step({"agent_9": np.zeros(2)})


def test_the_crowded_world_serves_the_equal_share_of_every_station() -> None:
    from nodes.env.gridlife import STATION_RATES, GridLifeConfig, crowded_world

    world = GridLifeConfig()
    crowded = crowded_world(world, 4)
    for name in STATION_RATES:
        assert getattr(crowded, name) == pytest.approx(getattr(world, name) / 4)
    assert crowded.k_basal == world.k_basal  # only what a station serves is shared
    assert crowded_world(world, 4, capacity=8.0) == world  # room for every body: the full rate
    for bad, field in (({"bodies": 0}, "bodies"), ({"bodies": 2.5}, "bodies"), ({"bodies": 2, "capacity": 0.0}, "capacity")):
        with pytest.raises(ValueError, match=f"^{field}: "):
            crowded_world(world, **bad)  # type: ignore[arg-type]
