"""Allocator rule on fixed requests, Jain's index, the env's equal-share fallback, and bad requests."""

import numpy as np
import pytest

from nodes.allocator.core import Allocator, AllocatorConfig, GrantBook, jain_index, requests, water_fill
from nodes.env.multi_gridlife import MultiGridLifeBatch, MultiGridLifeConfig


def _allocate(station: list[int], demand: list[float], margin: list[float]) -> np.ndarray:
    allocator = Allocator(AllocatorConfig(), len(station))
    return allocator.allocate(np.array([station]), np.array([demand]), np.array([margin]), n_stations=5)[0]


def test_demands_that_fit_are_granted_in_full() -> None:
    np.testing.assert_allclose(_allocate([0, 0, -1], [0.3, 0.6, 0.9], [0.5, 0.5, 0.5]), [0.3, 0.6, 0.0])


def test_an_overbooked_station_is_shared_in_proportion_to_need() -> None:
    np.testing.assert_allclose(_allocate([2, 2], [1.0, 0.5], [0.5, 0.5]), [2 / 3, 1 / 3])


def test_the_smallest_margin_weighs_most() -> None:
    np.testing.assert_allclose(_allocate([1, 1], [1.0, 1.0], [0.1, 0.4]), [0.8, 0.2])


def test_what_a_saturated_body_leaves_goes_to_the_others() -> None:
    # weights 0.2/0.05 = 4, 2, 2: the first would get 0.5 but needs 0.2; the other two split the remaining 0.8
    np.testing.assert_allclose(_allocate([0, 0, 0], [0.2, 1.0, 1.0], [0.05, 0.5, 0.5]), [0.2, 0.4, 0.4])
    assert water_fill(np.array([0.0, 0.0]), np.array([0.0, 0.0])).tolist() == [0.0, 0.0]


def test_stations_are_allocated_apart_and_jain_judges_satisfaction() -> None:
    allocator = Allocator(AllocatorConfig(), 3)
    grants = allocator.allocate(np.array([[0, 0, 1]]), np.array([[1.0, 1.0, 1.0]]), np.array([[0.5, 0.5, 0.5]]), 2)
    np.testing.assert_allclose(grants[0], [0.5, 0.5, 1.0])
    assert allocator.jain_index() == pytest.approx(2.0**2 / (3 * 1.5))  # satisfactions 0.5, 0.5, 1
    assert jain_index(np.ones(4)) == 1.0 and jain_index(np.array([1.0, 0.0, 0.0])) == pytest.approx(1 / 3)
    assert jain_index(np.zeros(0)) == 1.0


def test_requests_come_from_the_internal_state_and_the_station_kind() -> None:
    batch = MultiGridLifeBatch(MultiGridLifeConfig(num_agents=2))
    kinds = batch.layout.station_kinds
    refuel, cool = int(np.flatnonzero(kinds == 0)[0]), int(np.flatnonzero(kinds == 1)[0])
    internal = np.array([[[0.99, 0.5, 1.0], [0.5, 0.02, 1.0]]])
    demand, margin = requests(internal, np.array([[refuel, cool]]), kinds, batch.cfg.world)
    # dt*rho = 0.05 a step: 0.01 of energy to fill is 0.2 of a step's rate, 0.02 of temperature to shed is 0.4
    np.testing.assert_allclose(demand[0], [0.2, 0.4])
    np.testing.assert_allclose(margin[0], [0.5, 0.5])


def test_the_env_falls_back_to_equal_shares_without_fresh_grants() -> None:
    batch = MultiGridLifeBatch(MultiGridLifeConfig(num_agents=2))
    batch.reset(seed=0)
    centre = batch.layout.stations("refuel")[0][0]
    internal = np.array([[[0.2, 0.4, 1.0], [0.5, 0.4, 1.0]]])
    still = np.zeros((1, 2, 2))
    book, allocator = GrantBook(), Allocator(AllocatorConfig(), 2)
    shares = []
    for step in range(3):
        batch.place(np.array([[centre - np.array([0.25, 0.0]), centre + np.array([0.25, 0.0])]]), internal)
        station = np.full((1, 2), int(np.flatnonzero(batch.layout.station_kinds == 0)[0]))
        if step != 1:  # step 1: the allocator is gone
            demand, margin = requests(batch.internal, station, batch.layout.station_kinds, batch.cfg.world)
            book.put(step, allocator.allocate(station, demand, margin, len(batch.layout.station_kinds)))
        shares.append(batch.step(still, shares=book.shares(step)).share[0].tolist())
    assert shares[1] == [0.5, 0.5] and book.fallback_steps == 1
    assert shares[0] == shares[2] and shares[0][0] > shares[0][1]  # the emptier body gets more
    assert sum(shares[0]) == pytest.approx(1.0)


def test_bad_requests_are_refused_by_field() -> None:
    allocator = Allocator(AllocatorConfig(), 2)
    ok = np.array([[0, 0]]), np.array([[0.5, 0.5]]), np.array([[0.5, 0.5]])
    with pytest.raises(ValueError, match="demand: arena 0, agent 1: nan is not a number in"):
        allocator.allocate(ok[0], np.array([[0.5, np.nan]]), ok[2], 5)
    with pytest.raises(ValueError, match=r"station: arena 0, agent 0: 7 is no station \(0..4\)"):
        allocator.allocate(np.array([[7, 0]]), ok[1], ok[2], 5)
    with pytest.raises(ValueError, match=r"margin: expected shape \(1, 2\)"):
        allocator.allocate(ok[0], ok[1], np.array([0.5, 0.5, 0.5]), 5)
    with pytest.raises(ValueError, match=r"station: expected integer shape \(N, 2\)"):
        allocator.allocate(np.array([[0, 0, 0]]), ok[1], ok[2], 5)
    assert allocator.decisions == 0
