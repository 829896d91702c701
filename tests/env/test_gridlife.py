"""GridLife dynamics, viability, determinism, config validation and the gymnasium wrapper."""

import dataclasses

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import nodes.env.gym_env  # noqa: F401  (registers persist/GridLife-v0)
from nodes.env.gridlife import (
    GridLifeBatch,
    GridLifeConfig,
    build_layout,
    edge_distance,
    internal_step,
    is_dead,
    is_violation,
    margins,
    next_position,
    obs_names,
)
from nodes.env.gym_env import GridLifeEnv
from nodes.env.scripted import seek_station_policy

CFG = GridLifeConfig()
LAYOUT = build_layout(CFG)


def free_point(cfg: GridLifeConfig = CFG) -> np.ndarray:
    """A position at least 0.5 m outside every disc of the layout."""
    layout = build_layout(cfg)
    centres = np.concatenate([layout.station_centres, layout.hazard_centres, layout.hot_centres])
    radii = np.concatenate([layout.station_radii, layout.hazard_radii, layout.hot_radii])
    grid = np.stack(np.meshgrid(np.linspace(1, 9, 33), np.linspace(1, 9, 33)), axis=-1).reshape(-1, 2)
    clear = np.all(edge_distance(grid, centres, radii) > 0.5, axis=1)
    return grid[np.argmax(clear)]


def run_until_done(batch: GridLifeBatch, action: np.ndarray, max_steps: int = 50):
    for _ in range(max_steps):
        result = batch.step(action)
        if result.done.any():
            return result
    raise AssertionError("no arena ended")


# ------------------------------------------------------------------------------------------ dynamics


def test_next_position_moves_by_dt_vmax_and_clips_at_walls() -> None:
    pos = np.array([[5.0, 5.0], [9.95, 0.02]])
    action = np.array([[1.0, -0.5], [1.0, -1.0]])
    expected = np.array([[5.1, 4.95], [10.0, 0.0]])
    np.testing.assert_allclose(next_position(pos, action, CFG), expected)


def test_away_from_everything_only_basal_and_effort_terms_apply() -> None:
    h = np.array([[0.5, 0.5, 0.5]])
    action = np.array([[1.0, 0.0]])  # effort |a|^2/2 = 0.5
    h_next = internal_step(h, free_point()[None], action, CFG)
    dt = CFG.dt
    expected = [
        0.5 - dt * (CFG.k_basal + 0.5 * CFG.k_effort),
        0.5 + dt * (CFG.eta_basal + 0.5 * CFG.eta_effort),
        0.5 - dt * 0.5 * CFG.omega_wear,
    ]
    np.testing.assert_allclose(h_next[0], expected)


@pytest.mark.parametrize(
    ("kind", "index", "rate_field", "sign"),
    [("refuel", 0, "rho_refuel", +1), ("cool", 1, "rho_cool", -1), ("repair", 2, "rho_repair", +1)],
)
def test_each_station_moves_its_variable(kind: str, index: int, rate_field: str, sign: int) -> None:
    centres, _ = LAYOUT.stations(kind)
    h = np.array([[0.5, 0.5, 0.5]])
    still = np.zeros((1, 2))
    away = internal_step(h, free_point()[None], still, CFG)
    at_station = internal_step(h, centres[:1], still, CFG)
    change = at_station - away
    expected = np.zeros(3)
    expected[index] = sign * CFG.dt * getattr(CFG, rate_field)
    np.testing.assert_allclose(change[0], expected, atol=1e-12)


def test_stations_saturate_at_the_bounds() -> None:
    still = np.zeros((1, 2))
    full = np.array([[1.0, 0.0, 1.0]])
    for kind in ("refuel", "cool", "repair"):
        centre = LAYOUT.stations(kind)[0][:1]
        h_next = internal_step(full, centre, still, CFG)
        assert np.all(h_next >= 0.0) and np.all(h_next <= 1.0)


def test_hot_zone_heats() -> None:
    h = np.array([[0.5, 0.5, 0.5]])
    still = np.zeros((1, 2))
    hot = internal_step(h, LAYOUT.hot_centres[:1], still, CFG)
    away = internal_step(h, free_point()[None], still, CFG)
    assert hot[0, 1] - away[0, 1] == pytest.approx(CFG.dt * CFG.eta_hot)


def test_hazard_damages_integrity_and_is_a_violation_but_not_death() -> None:
    h = np.array([[0.5, 0.5, 0.5]])
    inside = LAYOUT.hazard_centres[:1]
    still = np.zeros((1, 2))
    damage = internal_step(h, free_point()[None], still, CFG)[0, 2] - internal_step(h, inside, still, CFG)[0, 2]
    assert damage == pytest.approx(CFG.dt * CFG.delta_hazard)
    m = margins(inside, h, CFG)
    assert m["hazard"][0] == pytest.approx(-LAYOUT.hazard_radii[0])
    assert is_violation(m)[0] and not is_dead(m)[0]


def test_margins_match_their_definitions() -> None:
    pos = np.array([free_point()])
    h = np.array([[0.3, 0.7, 0.9]])
    m = margins(pos, h, CFG)
    assert (m["energy"][0], m["temperature"][0], m["integrity"][0]) == pytest.approx((0.3, 0.3, 0.9))
    expected = np.min(np.linalg.norm(LAYOUT.hazard_centres - pos, axis=1) - LAYOUT.hazard_radii)
    assert m["hazard"][0] == pytest.approx(expected)
    assert not is_violation(m)[0]


# ------------------------------------------------------------------------------------ death, per kind


@pytest.mark.parametrize(
    ("params", "margin"),
    [({"k_basal": 20.0}, "energy"), ({"eta_basal": 20.0}, "temperature"), ({"omega_wear": 30.0}, "integrity")],
)
def test_leaving_each_bound_ends_the_episode(params: dict, margin: str) -> None:
    batch = GridLifeBatch(GridLifeConfig(**params), num_envs=3)
    batch.reset(seed=0)
    result = batch.step(np.ones((3, 2), dtype=np.float32))  # full effort, so wear counts too
    assert result.terminated.all() and not result.truncated.any()
    assert result.violation.all()
    assert np.all(result.margins[margin] <= 0)
    # the arenas restarted: the new state is alive again, the terminal one is kept in next_obs
    assert not is_dead(batch.margins()).any()
    assert np.all(batch.episode_steps == 0)
    assert not np.array_equal(result.reset_obs, result.next_obs)


def test_walking_into_a_hazard_is_reported_and_costs_integrity() -> None:
    batch = GridLifeBatch(CFG, num_envs=1)
    batch.reset(seed=3)
    centre = LAYOUT.hazard_centres[0]
    for _ in range(300):
        offset = centre - batch.positions[0]
        action = np.clip(offset / max(np.linalg.norm(offset), 1e-9), -1, 1)[None].astype(np.float32)
        integrity_before = batch.internal[0, 2]
        result = batch.step(action)
        if result.violation[0]:
            break
    else:
        raise AssertionError("never reached the hazard")
    assert result.margins["hazard"][0] < 0
    assert not result.terminated[0]
    assert integrity_before - result.next_internal[0, 2] >= CFG.dt * CFG.delta_hazard - 1e-9


def test_episode_cap_truncates() -> None:
    cfg = GridLifeConfig(episode_cap=5)
    batch = GridLifeBatch(cfg, num_envs=2)
    batch.reset(seed=0)
    result = run_until_done(batch, np.zeros((2, 2), dtype=np.float32))
    assert result.truncated.all() and not result.terminated.any()
    np.testing.assert_array_equal(result.episode_steps, [5, 5])


def test_tokens_pay_reward_and_respawn() -> None:
    batch = GridLifeBatch(CFG, num_envs=1)
    batch.reset(seed=1)
    total = 0.0
    for _ in range(400):
        token = batch.tokens[0][np.argmin(np.linalg.norm(batch.tokens[0] - batch.positions[0], axis=1))]
        offset = token - batch.positions[0]
        action = np.clip(offset / max(np.linalg.norm(offset), 0.1), -1, 1)[None].astype(np.float32)
        total += batch.step(action).task_reward[0]
    assert total >= 2 * CFG.token_reward
    assert np.all(np.linalg.norm(batch.tokens[0] - batch.positions[0], axis=1) > CFG.token_radius)


# ------------------------------------------------------------------------------ determinism, actions


def rollout(seed: int, steps: int = 300, num_envs: int = 4) -> list[np.ndarray]:
    batch = GridLifeBatch(CFG, num_envs=num_envs)
    record = [batch.reset(seed=seed)]
    actions = np.random.default_rng(123).uniform(-1, 1, size=(steps, num_envs, 2)).astype(np.float32)
    for a in actions:
        result = batch.step(a)
        record += [result.reset_obs, result.next_internal, result.task_reward, result.done]
    return record


def test_same_seed_same_trajectory_and_different_seed_differs() -> None:
    first, again, other = rollout(7), rollout(7), rollout(8)
    assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_arena_trajectory_does_not_depend_on_the_batch_size() -> None:
    small = GridLifeBatch(CFG, num_envs=2).reset(seed=5)
    large = GridLifeBatch(CFG, num_envs=6).reset(seed=5)
    np.testing.assert_array_equal(small, large[:2])


@pytest.mark.parametrize(
    ("bad", "reason"),
    [(np.nan, "not finite"), (np.inf, "not finite"), (1.5, r"outside \[-1, 1\]"), (-1.01, r"outside \[-1, 1\]")],
)
def test_bad_actions_are_refused_naming_the_arena(bad: float, reason: str) -> None:
    batch = GridLifeBatch(CFG, num_envs=4)
    batch.reset(seed=0)
    state = (batch.positions.copy(), batch.internal.copy())
    actions = np.zeros((4, 2), dtype=np.float32)
    actions[2, 1] = bad
    with pytest.raises(ValueError, match=f"arena 2: .*{reason}"):
        batch.step(actions)
    # nothing moved
    np.testing.assert_array_equal(batch.positions, state[0])
    np.testing.assert_array_equal(batch.internal, state[1])


def test_wrong_action_shape_is_refused() -> None:
    batch = GridLifeBatch(CFG, num_envs=2)
    batch.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected shape \(2, 2\)"):
        batch.step(np.zeros((2, 3), dtype=np.float32))


def test_step_before_reset_is_refused() -> None:
    with pytest.raises(RuntimeError, match="before reset"):
        GridLifeBatch(CFG, num_envs=1).step(np.zeros((1, 2)))


# ------------------------------------------------------------------------------- observation, layout


def test_observation_layout_and_partial_observability() -> None:
    full = GridLifeBatch(CFG, num_envs=3)
    obs = full.reset(seed=2)
    assert obs.dtype == np.float32 and obs.shape == (3, full.obs_dim) == (3, len(obs_names(CFG)))
    names = full.obs_names
    internal_cols = [names.index(n) for n in ("energy", "temperature", "integrity")]
    np.testing.assert_allclose(obs[:, internal_cols], full.internal, rtol=1e-6)
    np.testing.assert_allclose(obs[:, :2], full.positions / CFG.arena_size, rtol=1e-6)
    hidden = GridLifeBatch(dataclasses.replace(CFG, partial_observability=True), num_envs=3)
    obs_hidden = hidden.reset(seed=2)
    assert obs_hidden.shape == (3, full.obs_dim - 3)
    assert "energy" not in hidden.obs_names
    np.testing.assert_array_equal(obs_hidden, obs[:, : full.obs_dim - 3])
    result = hidden.step(np.zeros((3, 2), dtype=np.float32))
    assert result.next_internal.shape == (3, 3)  # the true state stays available


def test_observation_points_at_the_nearest_feature_of_each_kind() -> None:
    """(dx, dy, dist) / L per kind, by brute force over the layout: centre distance for stations and tokens,
    signed edge distance for hazards and hot zones."""
    env = GridLifeBatch(CFG, num_envs=64)
    env.reset(seed=4)
    obs = env.step(np.random.default_rng(4).uniform(-1, 1, size=(64, 2)).astype(np.float32)).reset_obs
    names, lay, L = env.obs_names, env.layout, CFG.arena_size
    features = {kind: (*lay.stations(kind), False) for kind in ("refuel", "cool", "repair")}
    features.update(hazard=(lay.hazard_centres, lay.hazard_radii, True), hot=(lay.hot_centres, lay.hot_radii, True))
    for i, p in enumerate(env.positions):
        discs = dict(features, token=(env.tokens[i], np.zeros(CFG.n_tokens), False))
        for kind, (centres, radii, edge) in discs.items():
            dist = np.linalg.norm(centres - p, axis=1) - (radii if edge else 0.0)
            k = int(np.argmin(dist))
            expected = np.clip([*(centres[k] - p) / L, dist[k] / L], -1.0, np.sqrt(2.0))
            got = obs[i, [names.index(f"{kind}_{c}") for c in ("dx", "dy", "dist")]]
            np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=f"arena {i}, {kind}")


def test_layout_discs_are_disjoint_inside_the_arena_and_fixed_by_seed() -> None:
    for seed in range(5):
        cfg = GridLifeConfig(layout_seed=seed)
        layout = build_layout(cfg)
        centres = np.concatenate([layout.station_centres, layout.hazard_centres, layout.hot_centres])
        radii = np.concatenate([layout.station_radii, layout.hazard_radii, layout.hot_radii])
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) - radii[:, None] - radii[None]
        np.fill_diagonal(gaps, np.inf)
        assert gaps.min() >= cfg.layout_gap
        assert np.all(centres - radii[:, None] >= cfg.wall_gap)
        assert np.all(centres + radii[:, None] <= cfg.arena_size - cfg.wall_gap)
        assert {0, 1, 2} <= set(layout.station_kinds.tolist())
    again = build_layout(GridLifeConfig(layout_seed=0, episode_cap=7))
    np.testing.assert_array_equal(again.hazard_centres, LAYOUT.hazard_centres)
    with pytest.raises(ValueError, match="read-only"):
        LAYOUT.hazard_centres[0, 0] = 0.0


# ---------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"dt": -0.1}, "dt", "> 0"),
        ({"arena_size": float("nan")}, "arena_size", "finite"),
        ({"episode_cap": 0}, "episode_cap", ">= 1"),
        ({"episode_cap": 10.5}, "episode_cap", "integer"),
        ({"n_tokens": True}, "n_tokens", "integer"),
        ({"k_basal": "fast"}, "k_basal", "number"),
        ({"partial_observability": 1}, "partial_observability", "bool"),
        ({"setpoints": (0.8, 0.4)}, "setpoints", "3 numbers"),
        ({"setpoints": (0.8, 0.4, 1.5)}, "setpoints", r"\[0, 1\]"),
        ({"hazard_radius_min": 1.5, "hazard_radius_max": 1.0}, "hazard_radius_max", ">= hazard_radius_min"),
        ({"drive_form": "cubic"}, "drive_form", "one of"),
        ({"dt": 1.0}, "dt", "station_radius"),
        ({"n_hazards": 40}, "layout_seed", "fewer or smaller"),
    ],
)
def test_bad_config_values_name_the_field(params: dict, field: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"{field}.*{reason}"):
        build_layout(GridLifeConfig(**params))


def test_from_params_accepts_lists_and_rejects_unknown_keys() -> None:
    cfg = GridLifeConfig.from_params({"setpoints": [0.7, 0.5, 0.9], "episode_cap": 50})
    assert cfg.setpoints == (0.7, 0.5, 0.9) and cfg.episode_cap == 50
    assert GridLifeConfig.from_params(cfg.to_params()) == cfg
    with pytest.raises(ValueError, match=r"unknown GridLife parameter.*num_tokens.*speed"):
        GridLifeConfig.from_params({"num_tokens": 3, "speed": 2.0, "dt": 0.1})


# ------------------------------------------------------------------------------------- gymnasium


@pytest.mark.parametrize("partial", [False, True])
def test_gym_env_passes_check_env(partial: bool) -> None:
    env = gymnasium.make("persist/GridLife-v0", partial_observability=partial, disable_env_checker=True)
    check_env(env.unwrapped, skip_render_check=True)


def test_gym_env_reports_reward_parts_and_terminal_observation() -> None:
    env = GridLifeEnv(k_basal=20.0)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))
    assert terminated and not truncated and info["violation"]
    assert info["margins"]["energy"] <= 0
    assert reward == pytest.approx(info["task_reward"] + info["homeo_reward"])
    assert env.observation_space.contains(obs)


# ---------------------------------------------------------------------------------- scripted policy


def test_scripted_controller_acts_in_range_from_the_state() -> None:
    batch = GridLifeBatch(CFG, num_envs=5)
    batch.reset(seed=0)
    actions = seek_station_policy(batch.positions, batch.internal, batch.tokens, CFG)
    assert actions.shape == (5, 2) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 1.0)


def test_the_tokens_counted_are_what_the_task_reward_pays_for() -> None:
    cfg = GridLifeConfig(token_reward=2.5)
    batch = GridLifeBatch(cfg, num_envs=4)
    batch.reset(seed=3)
    collected = 0
    for _ in range(100):
        result = batch.step(seek_station_policy(batch.positions, batch.internal, batch.tokens, cfg, batch.layout))
        assert result.tokens.dtype == np.int64 and np.array_equal(result.task_reward, result.tokens * 2.5)
        collected += int(result.tokens.sum())
    assert collected > 0  # the station keeper collects tokens between refills


def test_shift_rates_changes_the_dynamics_from_the_next_step_and_keeps_the_state() -> None:
    base, shifted = GridLifeBatch(GridLifeConfig(), 16), GridLifeBatch(GridLifeConfig(), 16)
    base.reset(seed=3)
    shifted.reset(seed=3)
    before = shifted.internal.copy(), shifted.positions.copy(), shifted.tokens.copy()
    shifted.shift_rates(k_basal=0.06)
    for now, then in zip((shifted.internal, shifted.positions, shifted.tokens), before, strict=True):
        np.testing.assert_array_equal(now, then)  # the shift itself moves nothing
    still = np.zeros((16, 2), np.float32)
    out_base, out_shifted = base.step(still), shifted.step(still)
    spent_base = before[0][:, 0] - out_base.next_internal[:, 0]
    spent_shifted = before[0][:, 0] - out_shifted.next_internal[:, 0]
    away = spent_base > 0  # arenas not on a refuel station spend dt * k_basal standing still
    assert away.any()
    np.testing.assert_allclose(spent_base[away], 0.1 * 0.03, rtol=1e-9)
    np.testing.assert_allclose(spent_shifted[away], 0.1 * 0.06, rtol=1e-9)
    with pytest.raises(ValueError, match="arena_size: not a rate"):
        shifted.shift_rates(arena_size=12.0)
    with pytest.raises(ValueError, match="k_basal"):
        shifted.shift_rates(k_basal=-1.0)
