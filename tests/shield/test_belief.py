"""The shield under partial observability: it certifies against the belief's confidence box, not its mean."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.env import kernels
from nodes.env.gridlife import GridLifeConfig
from nodes.shield.barriers import WORST_DIRECTION, GridLifeBarriers, belief_corner, drifted_corner
from nodes.shield.core import ShieldCore
from protocols import MODE_FALLBACK
from tests.shield.conftest import safe_states

ENV_CFG = GridLifeConfig()
CORE = ShieldCore(ENV_CFG)
BARRIERS: GridLifeBarriers = CORE.barriers
TABLES = (kernels.params(ENV_CFG), *kernels.tables(CORE.layout))
POOL_POS, POOL_H = safe_states(BARRIERS, 256, seed=3)  # states inside every barrier: the boxes' worst corners


def true_next(pos: np.ndarray, h: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The env's exact transition of one true state under the executed (float32) action."""
    a = action.astype(np.float32).astype(np.float64)
    nx, ny, e, t, i = kernels.transition(pos[0], pos[1], h[0], h[1], h[2], a[0], a[1], *TABLES)
    return np.array([nx, ny]), np.array([e, t, i])


unit = st.floats(0.0, 1.0)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(POOL_POS) - 1), std=st.tuples(*[st.floats(0.0, 0.1)] * 3), k=st.floats(0.5, 6.0),
       where=st.tuples(unit, unit, unit), proposal=st.tuples(*[st.floats(-1.0, 1.0)] * 2))
def test_every_true_state_in_the_box_keeps_its_barriers(index: int, std: tuple[float, ...], k: float,
                                                        where: tuple[float, ...], proposal: tuple[float, ...]) -> None:
    pos, corner = POOL_POS[index], POOL_H[index]
    sigma = np.array(std)
    # a belief whose box has this safe corner as its worst one; the truth anywhere in the box (within [0, 1])
    mean = np.clip(corner - WORST_DIRECTION * k * sigma, 0.0, 1.0)
    low, high = np.clip(mean - k * sigma, 0.0, 1.0), np.clip(mean + k * sigma, 0.0, 1.0)
    truth = low + np.array(where) * (high - low)
    certified = belief_corner(mean[None], sigma[None], k, calibrated=True)
    decision = CORE.step(0, pos[None], certified, np.array([proposal]), 0.0)
    pos2, h2 = true_next(pos, truth, decision.actions[0])
    if decision.mode[0] != MODE_FALLBACK and decision.constraint[0] != "backup":  # the filter's certified action
        assert BARRIERS.values(pos2, h2).min() >= -1e-9
    # whatever acted, the true state stays viable (the env's ground truth: no death this step)
    assert h2[0] > 0.0 and h2[1] < 1.0 and h2[2] > 0.0
    assert kernels.hazard_margin(pos2[0], pos2[1], TABLES[0], TABLES[4], TABLES[5]) >= 0.0


def test_the_worst_corner_is_worst_for_every_barrier_row() -> None:
    rng = np.random.default_rng(0)
    pos = rng.uniform(0.0, ENV_CFG.arena_size, size=(200, 2))
    mean, std = rng.uniform(0.0, 1.0, size=(200, 3)), rng.uniform(0.0, 0.2, size=(200, 3))
    corner = belief_corner(mean, std, 2.0, calibrated=True)
    inside = np.clip(mean + (2 * rng.random((200, 3)) - 1) * 2.0 * std, 0.0, 1.0)
    assert (BARRIERS.values(pos, inside) >= BARRIERS.values(pos, corner) - 1e-12).all()


def test_an_uncalibrated_belief_is_no_knowledge_and_the_backup_policy_acts() -> None:
    pos, h = POOL_POS[:16], POOL_H[:16]
    # a confident, precise belief: but not calibrated, so the shield must not trust it
    certified = belief_corner(h, np.full_like(h, 1e-3), 3.0, calibrated=False)
    assert (certified == [0.0, 1.0, 0.0]).all()  # the worst of the whole range of every variable
    core = ShieldCore(ENV_CFG)
    backups = core.counts["gatekeeper.backup"]
    decision = core.step(0, pos, certified, np.zeros((16, 2)), 0.0)
    assert (decision.mode == MODE_FALLBACK).all()
    assert decision.constraint == ["backup"] * 16
    assert core.counts["gatekeeper.backup"] - backups == 16
    assert decision.actions == pytest.approx(core.gatekeeper.actions(pos, certified))


# corners the backup alone certifies from (the induction's premise: every state the shield leaves is one), drawn
# over the whole arena and the whole internal range, low corners included, so that the backup often has to act
_rng = np.random.default_rng(5)
_pos = _rng.uniform(0.0, ENV_CFG.arena_size, size=(4000, 2))
_h = np.column_stack([_rng.uniform(0.05, 1.0, 4000), _rng.uniform(0.0, 0.95, 4000), _rng.uniform(0.05, 1.0, 4000)])
_ok = CORE.gatekeeper.certified(_pos, _h)
BACKUP_POS, BACKUP_H = _pos[_ok][:400], _h[_ok][:400]


@settings(max_examples=25, deadline=None)
@given(index=st.integers(0, len(BACKUP_POS) - 1), width=st.tuples(*[st.floats(0.0, 0.2)] * 3),
       where=st.tuples(unit, unit, unit), proposal=st.tuples(*[st.floats(-1.0, 1.0)] * 2))
def test_what_passes_is_safe_for_every_state_of_the_set(index: int, width: tuple[float, ...],
                                                        where: tuple[float, ...], proposal: tuple[float, ...]) -> None:
    """Whatever acts (the filter's action, or the backup on the worst corner when nothing is certified for it),
    its certificate from the worst corner holds for every true state of the box: the same actions taken from the
    truth keep every viability margin of every next state >= -1e-9, all the way to the backup's terminal set."""
    pos, corner = BACKUP_POS[index], BACKUP_H[index]
    best = np.clip(corner - WORST_DIRECTION * np.array(width), 0.0, 1.0)
    truth = corner + np.array(where) * (best - corner)
    mean, std = 0.5 * (corner + best), 0.5 * np.abs(best - corner)
    certified = belief_corner(mean[None], std[None], 1.0, calibrated=True)  # the box's worst corner
    decision = CORE.step(0, pos[None], certified, np.array([proposal]), 0.0)
    action = decision.actions[0]
    ok, steps = CORE.gatekeeper.certify(pos[None], certified, action[None])
    assert ok[0]  # from a certified corner, what acts is certified: the filter's action, or the backup's
    # replay the corner's certified trajectory (the action, then the backup acting on the corner) from the truth
    p, h, p_true, h_true = pos[None], certified, pos, truth
    for k in range(int(steps[0]) + 1):
        a = action[None] if k == 0 else CORE.gatekeeper.actions(p, h)
        p, h, viable = CORE.gatekeeper.step(p, h, a)
        p_true, h_true = true_next(p_true, h_true, a[0])
        assert viable[0] and (p_true == p[0]).all()  # positions do not depend on the internal state
        assert (WORST_DIRECTION * (h_true - h[0]) <= 1e-12).all()  # the truth stays on the good side of the corner
        assert h_true[0] >= -1e-9 and 1.0 - h_true[1] >= -1e-9 and h_true[2] >= -1e-9
        assert kernels.hazard_margin(p_true[0], p_true[1], TABLES[0], TABLES[4], TABLES[5]) >= -1e-9


def test_a_missing_estimate_widened_by_the_worst_drift_still_holds_the_truth() -> None:
    from nodes.env.gridlife import GridLifeBatch, start_box
    from nodes.estimator.interval import IntervalBelief, as_estimate, worst_drift

    cfg = GridLifeConfig(partial_observability=True)
    sim, belief = GridLifeBatch(cfg, 8), IntervalBelief(cfg)
    obs, rng, gap = sim.reset(4), np.random.default_rng(4), 7
    low, high = start_box(cfg)
    start_corner = np.where(WORST_DIRECTION < 0, low, high)
    history = []
    for step in range(160):  # uniform actions: hazards, hot zones, deaths and restarts
        history.append((as_estimate(*belief.advance(step, obs, sim.episode_steps)), np.array(sim.internal)))
        if step >= gap:
            (mean, std), _ = history[step - gap]
            corner = drifted_corner(mean, std, gap, worst_drift(cfg), sim.episode_steps, start_corner)
            assert (WORST_DIRECTION * (sim.internal - corner) <= 1e-12).all()
        obs = sim.step(rng.uniform(-1.0, 1.0, size=(8, 2)).astype(np.float32)).reset_obs
