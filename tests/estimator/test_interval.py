"""The interval belief on real GridLife rollouts: the box always holds the true internal state, and a wrong model
of the dynamics is caught by the calibration check, which widens the box."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig
from nodes.env.scripted import seek_station_policy
from nodes.estimator.calibration import Calibration, CalibrationConfig
from nodes.estimator.interval import IntervalBelief, as_estimate

CFG = GridLifeConfig(partial_observability=True)


def rollout(cfg: GridLifeConfig, belief_cfg: GridLifeConfig, steps: int, arenas: int, seed: int,
            scripted: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(low, high, truth) per step of a rollout whose actions mix the scripted station keeper (share `scripted`
    of the arenas: they live long, refuel, cool and repair) and uniform noise (they wander into hazards and die)."""
    sim = GridLifeBatch(cfg, arenas)
    obs = sim.reset(seed)
    belief = IntervalBelief(belief_cfg)
    rng = np.random.default_rng(seed)
    keeper = np.arange(arenas) < round(scripted * arenas)
    out = []
    for step in range(steps):
        low, high = belief.advance(step, obs, sim.episode_steps)
        out.append((low.copy(), high.copy(), np.array(sim.internal)))
        actions = rng.uniform(-1.0, 1.0, size=(arenas, 2))
        kept = seek_station_policy(sim.positions, sim.internal, sim.tokens, cfg, sim.layout)
        actions = np.where(keeper[:, None], kept, actions).astype(np.float32)
        obs = sim.step(actions).reset_obs
    return out


def test_the_box_holds_the_truth_on_every_step_of_gridlife_rollouts() -> None:
    records = rollout(CFG, CFG, steps=400, arenas=8, seed=3, scripted=0.5)
    low, high, truth = (np.stack(x) for x in zip(*records, strict=True))
    assert (low <= truth).all() and (truth <= high).all()
    mean, std = as_estimate(low, high)  # what goes out on the wire, float32
    assert (mean - std <= truth).all() and (truth <= mean + std).all()
    width = high - low
    # no wider than the start box, but for a step's worth where a position lies on an edge to within float32
    assert width.mean() <= 2 * CFG.init_spread and width.max() <= 2 * CFG.init_spread + 0.1 + 1e-9
    # refuels, cool-downs and repairs clip the box shut: the belief is often exact
    assert (width[..., 0] < 1e-9).mean() > 0.05 and (width[..., 1] < 1e-9).mean() > 0.05


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scripted=st.sampled_from([0.0, 0.5, 1.0]), spread=st.floats(0.0, 0.3))
def test_the_box_holds_the_truth_for_any_seed_and_start_spread(seed: int, scripted: float, spread: float) -> None:
    cfg = replace(CFG, init_spread=spread, layout_seed=seed % 5)
    for low, high, truth in rollout(cfg, cfg, steps=150, arenas=4, seed=seed, scripted=scripted):
        assert (low <= truth).all() and (truth <= high).all()


def test_an_arena_met_mid_episode_starts_from_the_whole_range() -> None:
    sim = GridLifeBatch(CFG, 3)
    obs = sim.reset(0)
    for _ in range(5):
        obs = sim.step(np.zeros((3, 2), np.float32)).reset_obs
    belief = IntervalBelief(CFG)
    low, high = belief.advance(5, obs, sim.episode_steps)
    assert (low == 0.0).all() and (high == 1.0).all()
    obs = sim.step(np.zeros((3, 2), np.float32)).reset_obs
    low, high = belief.advance(7, obs, sim.episode_steps)  # step 6 never came: still no knowledge
    assert (low <= 0.0).all() and (high == 1.0).all()


def test_a_wrong_model_is_an_overconfident_belief_the_calibration_catches_and_widens() -> None:
    # the belief assumes half the true basal energy cost: its box drifts above the true energy
    wrong = replace(CFG, k_basal=CFG.k_basal / 2)
    records = rollout(CFG, wrong, steps=400, arenas=8, seed=1, scripted=1.0)
    cal = Calibration(CalibrationConfig(window=2000, min_samples=200, k_start=1.0, k_min=1.0, margin=1.0))
    outside, lowest = 0, 1.0
    for low, high, truth in records:
        mean, std = as_estimate(low, high)
        outside += int(((truth < mean - cal.k * std) | (truth > mean + cal.k * std)).any(axis=1).sum())
        cal.score(mean, std, cal.k, truth)
        if cal.samples >= cal.cfg.min_samples:
            lowest = min(lowest, cal.coverage)
            assert cal.calibrated == (cal.coverage >= cal.cfg.target)
    assert outside > 0 and lowest < cal.cfg.target  # the truth left the published box, and the check saw it
    assert cal.k > 10.0  # widened: the shield now certifies against a box that holds the truth again
    low, high, truth = records[-1]
    mean, std = as_estimate(low, high)
    assert ((mean - cal.k * std <= truth) & (truth <= mean + cal.k * std)).all()


def test_the_exact_box_is_calibrated_at_k_one() -> None:
    cal = Calibration(CalibrationConfig(window=4000, min_samples=500, k_start=1.0, k_min=1.0, margin=1.0))
    for low, high, truth in rollout(CFG, CFG, steps=300, arenas=8, seed=2, scripted=0.5):
        cal.score(*as_estimate(low, high), cal.k, truth)
    assert cal.coverage == 1.0 and cal.calibrated and cal.k == pytest.approx(1.0)


def test_the_exact_box_is_trusted_from_its_first_step_until_the_truth_is_seen_outside() -> None:
    """No warm-up of no knowledge for a box exact by construction (min_samples 0): one row outside revokes it."""
    cal = Calibration(CalibrationConfig(window=100, min_samples=0, k_start=1.0, k_min=1.0, margin=1.0))
    assert cal.calibrated and cal.calibrated_since == 0  # nothing scored yet
    mean, std = np.full((4, 3), 0.5), np.full((4, 3), 0.1)
    cal.score(mean, std, cal.k, mean + 0.05)  # inside
    assert cal.calibrated and cal.coverage == 1.0
    cal.score(mean, std, cal.k, mean + np.array([0.0, 0.0, 0.3]))  # outside on one variable: a wrong model
    assert not cal.calibrated and cal.coverage < cal.cfg.target
    learned = Calibration(CalibrationConfig(window=100, min_samples=10))
    assert not learned.calibrated  # a learned belief earns its trust first
