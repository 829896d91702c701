"""CBF coupler: next states keep every pair and own barrier, infeasibility and deadlock are detected and
resolved by the declared fallback, the grid finds every close pair."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.cbf_coupler import grid
from nodes.cbf_coupler.core import Coupler, CouplerConfig

TOL = -1e-9


def _separated(rng: np.random.Generator, n: int, size: float, d: float) -> np.ndarray:
    points: list[np.ndarray] = []
    while len(points) < n:
        p = rng.uniform(0.0, size, 2)
        if all(np.linalg.norm(p - q) >= d for q in points):
            points.append(p)
    return np.array(points)


def _check_next_state(cfg: CouplerConfig, pos: np.ndarray, step_len: np.ndarray, actions: np.ndarray,
                      A: np.ndarray, b: np.ndarray) -> None:  # fmt: skip
    nxt = pos + step_len[:, None] * actions.astype(np.float64)
    gaps = np.linalg.norm(nxt[:, None] - nxt[None], axis=-1) + np.eye(len(pos)) * 1e9
    assert gaps.min() - cfg.min_separation >= TOL
    assert (np.einsum("nrk,nk->nr", A, actions.astype(np.float64)) - b >= TOL).all()
    assert (nxt >= TOL).all() and (nxt <= cfg.arena_size - TOL).all()
    assert (np.abs(actions) <= 1.0).all()


def _random_case(rng: np.random.Generator, n: int, size: float) -> tuple:
    """A separated joint state, proposals, and own rows a = 0 keeps (a shield's rows at a viable state)."""
    cfg = CouplerConfig(min_separation=0.4, arena_size=size)
    pos = _separated(rng, n, size, cfg.min_separation)
    step_len = rng.uniform(0.05, 0.15, n)
    A = rng.normal(size=(n, 2, 2))
    b = -rng.uniform(0.0, 0.3, size=(n, 2))
    return cfg, pos, step_len, rng.uniform(-1.5, 1.5, (n, 2)), A, b


_COUPLERS: dict[tuple[int, float, str], Coupler] = {}  # one per shape: an OSQP set-up costs more than a decision


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 7), size=st.sampled_from([1.5, 2.5, 4.0]),
       solver=st.sampled_from(["exact", "osqp"]))
def test_next_state_keeps_every_pair_and_own_barrier(seed: int, n: int, size: float, solver: str) -> None:
    cfg, pos, _, proposals, A, b = _random_case(np.random.default_rng(seed), n, size)
    cfg = dataclasses.replace(cfg, solver=solver)
    step_len = np.random.default_rng(n).uniform(0.05, 0.15, n)
    coupler = _COUPLERS.get((n, size, solver)) or _COUPLERS.setdefault((n, size, solver), Coupler(cfg, step_len))
    decision = coupler.step(pos, proposals, A, b)
    _check_next_state(cfg, pos, step_len, decision.actions, A, b)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 7), k=st.sampled_from([5.0, 20.0, 200.0]))
def test_right_of_way_keeps_every_pair_and_own_barrier(seed: int, n: int, k: float) -> None:
    """Any split of a pair's budget keeps the joint row: with a priority, the weighted split keeps every barrier."""
    rng = np.random.default_rng(seed)
    cfg, pos, step_len, proposals, A, b = _random_case(rng, n, 2.5)
    cfg = dataclasses.replace(cfg, right_of_way=k)
    decision = Coupler(cfg, step_len).step(pos, proposals, A, b, priority=rng.uniform(0.0, 1.0, n))
    _check_next_state(cfg, pos, step_len, decision.actions, A, b)


def test_right_of_way_lets_the_body_nearer_its_limits_keep_its_way() -> None:
    """A body heading for one that stands: without right of way it may close only its half of the pair's budget
    (the halves split by speed, here alike); with right of way, being the one nearer its limits, nearly all."""
    pos, step_len = np.array([[1.0, 1.0], [1.5, 1.0]]), np.array([0.1, 0.1])
    proposals = np.array([[1.0, 0.0], [0.0, 0.0]])  # body 0 heads for body 1, which stands
    moved = {}
    for k in (0.0, 20.0):
        cfg = CouplerConfig(min_separation=0.4, arena_size=10.0, right_of_way=k)
        moved[k] = Coupler(cfg, step_len).step(pos, proposals, priority=np.array([0.0, 1.0])).actions[:, 0]
    assert moved[20.0][0] > 1.5 * moved[0.0][0] > 0  # body 0 (the needier) gets (nearly) all of the budget
    assert abs(moved[20.0][1]) < 1e-3 and abs(moved[0.0][1]) < 1e-3  # body 1 stands as it proposed


def test_a_crowded_closed_loop_keeps_every_barrier() -> None:
    rng = np.random.default_rng(0)
    cfg, pos, step_len, _, _, _ = _random_case(rng, 8, 3.0)
    coupler = Coupler(cfg, step_len)
    for _ in range(800):  # a closed loop crowds the agents together: many pairs at their limit
        A = np.zeros((8, 1, 2))
        b = np.full((8, 1), -np.inf)
        proposals = rng.uniform(-1.0, 1.0, (8, 2)) + 0.5 * (1.5 - pos)  # pulled towards the centre
        decision = coupler.step(pos, proposals, A, b)
        _check_next_state(cfg, pos, step_len, decision.actions, A, b)
        pos = pos + step_len[:, None] * decision.actions.astype(np.float64)
    assert coupler.counts["interventions"] > 400 and coupler.counts["infeasible"] == 0


def test_an_infeasible_group_gets_the_priority_ordered_stop() -> None:
    """Agent 0's own row pushes it right into agent 1, which stands by the right wall: no joint action exists."""
    cfg = CouplerConfig(min_separation=0.4, arena_size=10.0)
    pos = np.array([[9.5, 5.0], [9.95, 5.0]])  # 0.05 m more than min_separation apart; agent 1 0.05 m from the wall
    A = np.array([[[1.0, 0.0]], [[0.0, 0.0]]])
    b = np.array([[0.9], [-np.inf]])  # a_0x >= 0.9: agent 1 would have to move 0.065 m right, and has 0.05
    coupler = Coupler(cfg, np.array([0.1, 0.1]))
    decision = coupler.step(pos, np.array([[1.0, 0.0], [0.0, 1.0]]), A, b, priority=np.array([1.0, 0.0]))
    assert decision.infeasible == 1 and decision.fallback.all() and coupler.counts["infeasible"] == 1
    assert decision.own_rows_broken == 1  # agent 0, second in priority, is stopped: its own row is the one broken
    assert decision.actions[0].tolist() == [0.0, 0.0]
    nxt = pos + 0.1 * decision.actions.astype(np.float64)
    assert np.linalg.norm(nxt[0] - nxt[1]) - 0.4 >= TOL and nxt[1, 0] <= 10.0  # never fails open
    # agent 1 went first: it keeps the action nearest its proposal (along the wall)
    assert decision.actions[1, 1] > 0.9


def test_a_head_on_deadlock_is_detected_and_resolved_by_yielding() -> None:
    cfg = CouplerConfig(min_separation=0.4, arena_size=10.0)
    goals = np.array([[7.0, 5.0], [3.0, 5.0]])
    pos = np.array([[3.0, 5.0], [7.0, 5.0]])
    coupler = Coupler(cfg, np.array([0.1, 0.1]))
    detected, closest = 0, math.inf
    for _ in range(400):
        heading = goals - pos
        proposals = heading / np.maximum(np.linalg.norm(heading, axis=1, keepdims=True), 1e-9)
        decision = coupler.step(pos, proposals)
        detected += decision.deadlocks
        pos = pos + 0.1 * decision.actions.astype(np.float64)
        closest = min(closest, float(np.linalg.norm(pos[0] - pos[1])))
    assert detected >= 1 and coupler.counts["deadlocks"] == detected
    assert closest - 0.4 >= TOL
    np.testing.assert_allclose(pos, goals, atol=0.05)  # they got past each other


def test_the_grid_finds_exactly_the_pairs_that_can_bind() -> None:
    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(2, 60))
        pos = rng.uniform(-5.0, 15.0, (n, 2))
        step_len = rng.uniform(0.05, 0.2, n)
        d, gamma = 0.4, float(rng.uniform(0.2, 1.0))
        found = grid.close_pairs(pos, step_len, d, gamma, grid.reach(d, step_len, gamma))
        gaps = np.linalg.norm(pos[:, None] - pos[None], axis=-1) - d
        bind = gamma * gaps < (step_len[:, None] + step_len[None]) * math.sqrt(2.0) + 1e-12
        expected = {(i, j) for i, j in np.argwhere(np.triu(bind, k=1))}
        assert {tuple(p) for p in found.tolist()} == expected, trial


def test_bad_input_is_refused_by_field() -> None:
    coupler = Coupler(CouplerConfig(), np.array([0.1, 0.1]))
    with pytest.raises(ValueError, match="proposals: agent 1 is not finite"):
        coupler.step(np.array([[1.0, 1.0], [3.0, 3.0]]), np.array([[0.0, 0.0], [np.nan, 0.0]]))
    with pytest.raises(ValueError, match=r"positions: expected shape \(2, 2\)"):
        coupler.step(np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="priority"):
        coupler.step(np.array([[1.0, 1.0], [3.0, 3.0]]), np.zeros((2, 2)), priority=np.array([0.0]))
    with pytest.raises(ValueError, match="gamma: must lie in"):
        CouplerConfig(gamma=0.0)
