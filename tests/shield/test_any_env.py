"""The shield for any Box action space (nodes/shield/any_env.py) in process: zero executed violations under random
proposals on envs of action dimension 1, 2, 6 and 17 with the affine and the model descriptions; bad description
functions named, counted and answered by the fallback; the n-D QP's projection as a property."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

import nodes.env.point_envs  # noqa: F401  (registers the point envs)
from nodes.env.gym_adapter import GymBatch
from nodes.env.node import scale_to_box
from nodes.shield.any_env import AnyEnvConfig, AnyEnvShield
from nodes.shield.box_qp import BoxQP
from nodes.shield.description import DescriptionError
from protocols import MODE_FALLBACK, MODE_FILTERED

ARENAS, STEPS = 4, 750  # 3,000 arena-steps per case
BAD = "tests/shield/bad_descriptions.py"

ENVS = {  # name: (env_id, env kwargs, env constraint, rows, model, backup)
    "pendulum_1d": ("Pendulum-v1", {}, "nodes.env.constraints:pendulum_speed", "nodes.env.pendulum_safety:speed_rows",
                    "nodes.env.pendulum_safety:speed_model", "nodes.env.pendulum_safety:brake"),
    "double_integrator_2d": ("persist/PlanarDoubleIntegrator-v0", {}, "nodes.env.point_envs:planar_margin",
                             "nodes.env.point_safety:planar_rows", "nodes.env.point_safety:planar_model", ""),
    # PointMass at 6 dims is judged by the cost it reports in info, without a constraint function of its own
    "point_mass_6d": ("persist/PointMass-v0", {"dim": 6}, "nodes.env.constraints:info_cost",
                      "nodes.env.point_safety:point_rows", "nodes.env.point_safety:point_model", ""),
    "point_mass_17d": ("persist/PointMass-v0", {"dim": 17}, "nodes.env.point_envs:point_margin",
                       "nodes.env.point_safety:point_rows", "nodes.env.point_safety:point_model", ""),
}


def run(name: str, filt: str | None) -> tuple[int, AnyEnvShield | None]:
    """Executed violations of STEPS seeded random proposals, through the shield (filt) or unshielded (None)."""
    env_id, kwargs, constraint, rows, model, backup = ENVS[name]
    sim = GymBatch(env_id, ARENAS, constraint, kwargs)
    obs = sim.reset(0)
    core = None if filt is None else AnyEnvShield(
        sim.action_space, AnyEnvConfig(filter=filt, rows=rows, model=model, backup=backup))  # type: ignore[arg-type]
    rng = np.random.default_rng(1)
    violations = 0
    for step in range(STEPS):
        proposed = rng.uniform(-1.0, 1.0, (ARENAS, sim.action_space.shape[0])).astype(np.float32)
        actions = proposed if core is None else core.step(step, obs, proposed, 0.0).actions
        result = sim.step(scale_to_box(actions, sim.action_space))
        violations += int(result.violation.sum())
        obs = result.reset_obs
    sim.close()
    return violations, core


@pytest.mark.parametrize("name", list(ENVS))
def test_random_proposals_through_either_description_execute_no_violation(name: str) -> None:
    unshielded, _ = run(name, None)
    assert unshielded > 0  # the proposals do break the constraint
    for filt in ("qp", "search"):
        violations, core = run(name, filt)
        assert core is not None
        assert violations == 0, (name, filt)
        assert core.counts["decisions"] == ARENAS * STEPS and core.counts["mode.filtered"] > 0
        assert sum(core.counts[f"description_errors.{r}"] for r in ("rows", "model", "backup")) == 0
        # a fallback is never the proposal: only the backup (Pendulum) ever answers, and only where nothing was safe
        assert core.counts["mode.fallback"] == core.counts["degraded.infeasible"] == core.counts["backup_actions"]


def point_shield(**kw: str) -> AnyEnvShield:
    return AnyEnvShield(spaces.Box(-1.0, 1.0, (2,), np.float32), AnyEnvConfig(**kw))  # type: ignore[arg-type]


OBS = np.array([[0.5, 0.0, 0.0, 0.0], [0.99, 0.0, 0.0, 0.0]], np.float32)  # two arenas: x and goal
PUSH = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)  # arena 1's proposal would leave the box


@pytest.mark.parametrize(("kind", "function", "reason"), [
    ("rows", "rows_wrong_shape", "shape (2, 3), expected (any, 2)"),
    ("rows", "rows_nan", "b is not finite"),
    ("rows", "rows_raises", "raised RuntimeError: no rows today"),
    ("rows", "rows_not_a_pair", "must return (A, b)"),
    ("model", "model_nan", "margins is not finite"),
    ("model", "model_raises", "raised KeyError"),
])
def test_a_bad_description_is_named_counted_and_answered_by_the_fallback(kind: str, function: str,
                                                                          reason: str) -> None:
    spec = f"{BAD}:{function}"
    core = point_shield(filter="qp" if kind == "rows" else "search", **{kind: spec})
    for step in range(3):
        d = core.step(step, OBS, PUSH, 0.0)
        assert (d.mode == MODE_FALLBACK).all() and d.cause == ["bad_description"] * 2
        assert (d.actions == 0).all()  # the declared fallback, never the proposal
    assert core.counts[f"description_errors.{kind}"] == 6 and core.counts["degraded.bad_description"] == 6
    assert spec in core.errors[-1] and reason in core.errors[-1]


def test_a_model_whose_margins_change_width_is_refused_after_its_first_answer() -> None:
    core = point_shield(filter="search", model=f"{BAD}:model_changes_width")
    assert core.step(0, OBS[:1], PUSH[:1], 0.0).cause == [None]  # two margins, both >= 0: the proposal passes
    d = core.step(1, OBS[:1], PUSH[:1], 0.0)
    assert d.cause == ["bad_description"] and "margins has shape (1,), expected (2)" in core.errors[-1]


def test_the_backup_answers_a_bad_description_and_a_bad_backup_leaves_the_declared_fallback() -> None:
    core = point_shield(filter="qp", rows=f"{BAD}:rows_raises", backup=f"{BAD}:backup_left")
    d = core.step(0, OBS, PUSH, 0.0)
    assert (d.mode == MODE_FALLBACK).all() and d.constraint == ["backup"] * 2
    np.testing.assert_array_equal(d.actions, [[-1.0, 0.0], [-1.0, 0.0]])
    core = point_shield(filter="qp", rows=f"{BAD}:rows_raises", backup=f"{BAD}:backup_outside", fallback="hold")
    d = core.step(0, OBS, PUSH, 0.0)
    assert d.constraint == ["hold"] * 2 and (d.actions == 0).all()  # nothing held yet: the box centre
    assert core.counts["description_errors.backup"] == 2 and "outside the action box" in core.errors[-1]


def test_the_qp_projects_only_the_arena_that_would_leave_and_keeps_it_inside() -> None:
    core = point_shield(filter="qp", rows="nodes.env.point_safety:point_rows")
    d = core.step(0, OBS, PUSH, 0.0)
    assert d.mode.tolist() == [0, MODE_FILTERED] and d.constraint[1] == "row_0"
    np.testing.assert_array_equal(d.actions[0], PUSH[0])
    assert 0.99 + 0.1 * d.actions[1, 0] <= 1.0 and d.actions[1, 1] == pytest.approx(0.0, abs=1e-6)
    assert d.margin_before[1] < 0 <= d.margin_after[1]


def test_non_finite_observations_and_stale_input_take_the_fallback_without_calling_the_description() -> None:
    core = point_shield(filter="qp", rows=f"{BAD}:rows_raises")
    d = core.step(0, np.full((2, 4), np.nan, np.float32), PUSH, 0.0)
    assert d.cause == ["bad_input"] * 2 and (d.actions == 0).all()
    d = core.step(1, OBS, PUSH, 5.0)
    assert d.cause == ["stale"] * 2 and (d.actions == 0).all()
    assert core.counts["description_errors.rows"] == 0


def test_a_description_that_cannot_be_loaded_is_refused_by_name() -> None:
    with pytest.raises(DescriptionError, match="no_such_module"):
        point_shield(filter="qp", rows="no_such_module:rows")
    with pytest.raises(DescriptionError, match="has no attribute 'nothing'"):
        point_shield(filter="search", model=f"{BAD}:nothing")
    with pytest.raises(ValueError, match="rows: the qp filter needs"):
        point_shield(filter="qp", model=f"{BAD}:model_nan")


@settings(max_examples=60, deadline=None)
@given(dim=st.integers(1, 6), rows=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_the_qp_returns_a_verified_action_no_farther_from_the_proposal_than_any_safe_one(
        dim: int, rows: int, seed: int) -> None:
    """Rows built around a safe point u0 of a random box: the answer meets every row as executed, lies in the
    box, is the proposal itself when that is safe, and is at least as close to the proposal as u0."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(-3.0, 0.0, dim)
    space = spaces.Box(low.astype(np.float32), (low + rng.uniform(0.5, 4.0, dim)).astype(np.float32))
    qp = BoxQP(space)
    a0 = rng.uniform(-0.9, 0.9, dim).astype(np.float32)
    u0 = qp.executed(a0)
    A = rng.normal(size=(rows, dim))
    b = A @ u0 + rng.uniform(0.0, 1.0, rows)
    proposal = rng.uniform(-1.0, 1.0, dim).astype(np.float32)
    res = qp.project(0, A, b, proposal)
    assert res.feasible
    u = qp.executed(res.action)
    assert (A @ u <= b).all() and (np.abs(res.action) <= 1).all()
    u_prop = qp.executed(proposal)
    if (A @ u_prop <= b).all():
        np.testing.assert_array_equal(res.action, proposal)
    assert np.linalg.norm(u - u_prop) <= np.linalg.norm(u0 - u_prop) + 1e-4
