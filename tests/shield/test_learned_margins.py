"""Description 3, nothing but margins (nodes/shield/learned_margins.py through AnyEnvShield's `learned` filter):
on PointMass, once the margin model has trained on random exploration, random proposals through it break the
box at least ten times less often than unshielded; every degraded decision is counted by its cause."""

from __future__ import annotations

import numpy as np

import nodes.env.point_envs  # noqa: F401  (registers the point envs)
from nodes.env.gym_adapter import GymBatch
from nodes.env.node import scale_to_box
from nodes.shield.any_env import ANY_ENV_CAUSES, AnyEnvConfig, AnyEnvShield
from nodes.shield.learned_margins import LearnedMarginsConfig

ARENAS, EXPLORE, EVAL = 4, 250, 300
ENV = ("persist/PointMass-v0", ARENAS, "nodes.env.point_envs:point_margin", {"dim": 2})


def shield(**kw: object) -> AnyEnvShield:
    space = GymBatch(*ENV).action_space
    return AnyEnvShield(space, AnyEnvConfig(filter="learned", learned=LearnedMarginsConfig(min_samples=600), candidates=16,
                                            **kw))  # type: ignore[arg-type]


def margins(result: object) -> np.ndarray:
    return np.stack(list(result.margins.values()), axis=1)  # type: ignore[attr-defined]


def test_a_trained_margin_model_keeps_random_proposals_ten_times_safer_than_unshielded() -> None:
    core = shield()
    sim = GymBatch(*ENV)
    obs, rng = sim.reset(0), np.random.default_rng(1)
    assert core.step(0, obs, np.zeros((ARENAS, 2), np.float32), 0.0).cause == ["untrained"] * ARENAS
    for step in range(EXPLORE):  # random exploration, every transition learnt
        actions = rng.uniform(-1.0, 1.0, (ARENAS, 2)).astype(np.float32)
        result = sim.step(scale_to_box(actions, sim.action_space))
        core.learn(result.obs, actions, margins(result))
        if step % 5 == 0:
            core.train(5)
        obs = result.reset_obs
    assert core.learned is not None and core.learned.ready
    violations = {}
    for label in ("unshielded", "shielded"):
        sim = GymBatch(*ENV)
        obs, rng = sim.reset(7), np.random.default_rng(2)
        violations[label] = 0
        for step in range(EVAL):
            proposed = rng.uniform(-1.0, 1.0, (ARENAS, 2)).astype(np.float32)
            actions = proposed if label == "unshielded" else core.step(step, obs, proposed, 0.0).actions
            result = sim.step(scale_to_box(actions, sim.action_space))
            violations[label] += int(result.violation.sum())
            obs = result.reset_obs
    assert violations["unshielded"] > 50 and violations["shielded"] * 10 <= violations["unshielded"], violations
    counts = core.counts
    assert counts["mode.fallback"] == sum(counts[f"degraded.{c}"] for c in ANY_ENV_CAUSES)
    assert counts["degraded.untrained"] == ARENAS and counts["mode.filtered"] > 0


def test_an_unfamiliar_state_is_degraded_as_ood() -> None:
    core = shield(ood_fit_after=600)
    rng = np.random.default_rng(3)
    obs = rng.uniform(-0.5, 0.5, (600, 4))
    actions = rng.uniform(-1.0, 1.0, (600, 2))
    core.learn(obs, actions, 1.0 - np.abs(obs[:, :2] + 0.1 * actions).max(axis=1, keepdims=True))
    core.train(20)
    assert core.ood is not None and core.learned is not None and core.learned.ready
    far = np.array([[30.0, -30.0, 0.0, 0.0]], np.float32)
    assert core.step(0, far, np.zeros((1, 2), np.float32), 0.0).cause == ["ood"]
    assert core.counts["degraded.ood"] == 1
