"""The `gym` env node engine on Pendulum-v1 with the shipped speed constraint."""

from pathlib import Path

import numpy as np
import pytest

from nodes.env.constraints import PENDULUM_SPEED_LIMIT
from nodes.env.gym_adapter import ConstraintError, GymBatch, load_constraint

SPEED = "nodes.env.constraints:pendulum_speed"


def test_pendulum_speed_margins_and_violations() -> None:
    batch = GymBatch("Pendulum-v1", num_envs=3, constraint=SPEED)
    obs = batch.reset(seed=0)
    assert obs.shape == (3, 3) and obs.dtype == np.float32
    np.testing.assert_allclose(batch.margins()["speed"], PENDULUM_SPEED_LIMIT - np.abs(obs[:, 2]), rtol=1e-6)
    violations = 0
    for _ in range(150):  # full torque along the motion pumps energy in until the pendulum spins too fast
        torque = np.where(obs[:, 2:] >= 0, 2.0, -2.0).astype(np.float32)
        result = batch.step(torque)
        np.testing.assert_array_equal(result.obs, obs)  # the observation the actions were chosen on
        obs = result.reset_obs
        expected = PENDULUM_SPEED_LIMIT - np.abs(result.next_obs[:, 2])
        np.testing.assert_allclose(result.margins["speed"], expected, rtol=1e-6)
        np.testing.assert_array_equal(result.violation, expected < 0)
        violations += int(result.violation.sum())
    assert violations > 0
    batch.close()


def test_auto_reset_at_truncation_keeps_the_terminal_observation() -> None:
    batch = GymBatch("Pendulum-v1", num_envs=2, constraint=SPEED)
    batch.reset(seed=1)
    for _ in range(200):
        result = batch.step(np.zeros((2, 1), dtype=np.float32))
    assert result.truncated.all() and not result.terminated.any()
    np.testing.assert_array_equal(result.episode_steps, [200, 200])
    assert not np.array_equal(result.reset_obs, result.next_obs)


def test_same_seed_same_trajectory() -> None:
    def run(seed: int) -> np.ndarray:
        batch = GymBatch("Pendulum-v1", num_envs=2)
        frames = [batch.reset(seed=seed)]
        frames += [batch.step(np.full((2, 1), 1.0, dtype=np.float32)).reset_obs for _ in range(20)]
        return np.stack(frames)

    np.testing.assert_array_equal(run(4), run(4))
    assert not np.array_equal(run(4), run(5))


def test_without_constraints_nothing_is_a_violation() -> None:
    batch = GymBatch("Pendulum-v1", num_envs=1)
    batch.reset(seed=0)
    result = batch.step(np.zeros((1, 1), dtype=np.float32))
    assert result.margins == {} and not result.violation.any()


@pytest.mark.parametrize(("bad", "reason"), [(np.nan, "not finite"), (2.5, "outside"), (-np.inf, "not finite")])
def test_bad_actions_are_refused_naming_the_arena(bad: float, reason: str) -> None:
    batch = GymBatch("Pendulum-v1", num_envs=3, constraint=SPEED)
    batch.reset(seed=0)
    actions = np.zeros((3, 1), dtype=np.float32)
    actions[1] = bad
    with pytest.raises(ValueError, match=f"arena 1: .*{reason}"):
        batch.step(actions)


def test_discrete_actions_are_range_checked() -> None:
    batch = GymBatch("CartPole-v1", num_envs=2)
    batch.reset(seed=0)
    batch.step(np.array([0, 1]))
    with pytest.raises(ValueError, match="arena 0: action 2 is outside"):
        batch.step(np.array([2, 1]))


def test_constraint_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "upright.py"
    path.write_text("def upright(obs, info):\n    return {'height': float(obs[0])}\n")
    batch = GymBatch("Pendulum-v1", num_envs=2, constraint=f"{path}:upright")
    obs = batch.reset(seed=0)
    np.testing.assert_allclose(batch.margins()["height"], obs[:, 0], rtol=1e-6)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("nodes.env.constraints", "expected 'module:function'"),
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("nodes.env.constraints:missing", "has no attribute 'missing'"),
        ("nodes.env.constraints:PENDULUM_SPEED_LIMIT", "not callable"),
        ("does/not/exist.py:f", "does not exist"),
    ],
)
def test_bad_constraint_specs_name_the_spec_and_reason(spec: str, reason: str) -> None:
    with pytest.raises(ConstraintError, match=reason) as error:
        load_constraint(spec)
    assert repr(spec) in str(error.value)


def test_broken_file_and_bad_margins_are_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def f(obs, info):\n    return {\n")
    with pytest.raises(ConstraintError, match=r"executing .*broken\.py.* failed"):
        load_constraint(f"{broken}:f")
    bad = tmp_path / "bad.py"
    bad.write_text("def nan(obs, info):\n    return {'x': float('nan')}\n\ndef empty(obs, info):\n    return {}\n")
    with pytest.raises(ConstraintError, match="margin 'x' is not finite"):
        GymBatch("Pendulum-v1", constraint=f"{bad}:nan").reset(seed=0)
    with pytest.raises(ConstraintError, match="non-empty dict"):
        GymBatch("Pendulum-v1", constraint=f"{bad}:empty").reset(seed=0)
    # margins named by the state: arenas that start on either side of upright disagree on the names
    bad.write_text("def by_side(obs, info):\n    return {'left' if obs[1] > 0 else 'right': 1.0}\n")
    with pytest.raises(ConstraintError, match=r"arena [0-9]+ returned margins \[.(left|right).\], arena 0"):
        GymBatch("Pendulum-v1", num_envs=8, constraint=f"{bad}:by_side").reset(seed=0)


def test_unknown_env_id_is_refused() -> None:
    with pytest.raises(ValueError, match="env_id: 'NoSuchEnv-v9' is not a registered"):
        GymBatch("NoSuchEnv-v9")


def test_a_cost_in_info_is_a_constraint_without_user_code() -> None:
    """nodes.env.constraints:info_cost: an env's info["cost"] > 0 (Safety-Gymnasium) is a violation, margin -cost."""
    import nodes.env.point_envs  # noqa: F401  (registers persist/PointMass-v0, which reports a cost)

    by_cost = GymBatch("persist/PointMass-v0", 3, "nodes.env.constraints:info_cost", {"dim": 2})
    by_margin = GymBatch("persist/PointMass-v0", 3, "nodes.env.point_envs:point_margin", {"dim": 2})
    by_cost.reset(5), by_margin.reset(5)
    assert by_cost.margins()["cost"].tolist() == [0.0, 0.0, 0.0]  # a reset reports no cost
    violations = 0
    for _ in range(60):
        actions = np.ones((3, 2), np.float32)  # straight out of the box
        cost, margin = by_cost.step(actions), by_margin.step(actions)
        assert (cost.violation == margin.violation).all()
        assert set(cost.margins["cost"].tolist()) <= {0.0, -1.0}
        violations += int(cost.violation.sum())
    assert violations > 0
