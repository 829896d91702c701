"""ShieldCore: degraded-mode causes, deadlock handling, reports, and the closed loop with GridLife."""

import json

import numpy as np
import pytest
import torch

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig
from nodes.shield.core import CAUSES, ShieldConfig, ShieldCore
from nodes.shield.ood import EnergyOOD, OODConfig
from nodes.shield.qp import BarrierQP
from nodes.shield.state import STATE_NAMES, state_matrix
from nodes.shield.viability import ViabilityNet
from protocols import MODE_FALLBACK
from tests.shield.conftest import on_hazard_edge, safe_states

COMFORT = np.array([1.0, 0.0, 1.0])


def constant_net(value: float) -> ViabilityNet:
    """A viability network whose margin is `value` everywhere."""
    net = ViabilityNet(STATE_NAMES, [0, 0, 0, 0, 0], [10, 10, 1, 1, 1], hidden=(4,))
    with torch.no_grad():
        net.mlp[-1].weight.zero_()
        net.mlp[-1].bias.fill_(value)
    return net


def test_deadlock_is_detected_counted_and_handled(env_cfg: GridLifeConfig) -> None:
    cfg = ShieldConfig(deadlock_steps=5, deadlock_hold_steps=3)
    core = ShieldCore(env_cfg, cfg)
    pos, push = on_hazard_edge(core)
    assert core.barriers.values(pos[None], COMFORT[None]).min() >= 0
    modes, causes = [], []
    for step in range(12):
        d = core.step(step, pos[None], COMFORT[None], push[None], 0.0)
        modes.append(int(d.mode[0]))
        causes.append(d.cause[0])
    # stuck: filtered to ~0 for 4 steps, detected on the 5th, fallback held 3 steps, then filtering again
    assert modes[:4] == [1] * 4 and causes[:4] == [None] * 4
    assert causes[4:7] == ["deadlock"] * 3 and modes[4:7] == [2] * 3
    assert causes[7] is None
    assert core.counts["deadlocks_detected"] == 2  # 5 more stuck steps after the hold: detected again
    assert core.counts["degraded.deadlock"] == 3 + 1


def test_stale_inputs_go_to_fallback(env_cfg: GridLifeConfig) -> None:
    core = ShieldCore(env_cfg, ShieldConfig(input_deadline_s=0.01))
    pos = np.array([[5.0, 9.0], [1.0, 1.0]])
    d = core.step(0, pos, np.tile(COMFORT, (2, 1)), np.zeros((2, 2)), input_age_s=0.5)
    assert d.cause == ["stale", "stale"] and list(d.mode) == [2, 2]
    assert core.counts["degraded.stale"] == 2
    d = core.step(1, pos, np.tile(COMFORT, (2, 1)), np.zeros((2, 2)), input_age_s=float("nan"))
    assert d.cause == ["stale", "stale"]


def test_ood_routes_to_fallback(env_cfg: GridLifeConfig) -> None:
    rng = np.random.default_rng(0)
    pos = rng.uniform(0.5, 4.5, size=(3000, 2))
    h = np.clip(np.array([0.8, 0.4, 1.0]) + rng.normal(0, 0.05, size=(3000, 3)), 0, 1)
    ood = EnergyOOD(OODConfig(components=4)).fit(state_matrix(pos, h))
    core = ShieldCore(env_cfg, ShieldConfig(), ood=ood)
    states = np.array([[2.5, 2.5], [8.0, 8.5]])
    d = core.step(0, states, np.array([[0.8, 0.4, 1.0], [0.8, 0.4, 1.0]]), np.zeros((2, 2)), 0.0)
    assert d.cause[0] != "ood" and d.cause[1] == "ood" and d.mode[1] == MODE_FALLBACK
    assert core.counts["degraded.ood"] == 1


def test_infeasible_qp_goes_to_fallback(env_cfg: GridLifeConfig) -> None:
    core = ShieldCore(env_cfg, ShieldConfig())
    # a safe state where two urgent needs pull in different directions, so the QP has no solution
    pos, h = safe_states(core.barriers, 3000, seed=3)
    rows = core.barriers.constraints(pos, h)
    infeasible = ~BarrierQP(core.barriers.n_rows, max_instances=1).solve(rows.A, rows.b, 0 * pos).feasible
    assert infeasible.any()
    pos, h = pos[infeasible][:1], h[infeasible][:1]
    d = core.step(0, pos, h, np.array([[1.0, 0.0]]), 0.0)
    assert d.cause == ["infeasible"] and d.mode[0] == MODE_FALLBACK
    assert core.counts["degraded.infeasible"] == 1
    assert np.linalg.norm(d.actions[0]) > 0.1  # seek_station moves; it does not pass the proposal
    assert not np.allclose(d.actions[0], [1.0, 0.0])


def test_keep_out_rows_are_the_position_rows_and_a_tangent_half_plane_per_hot_zone(env_cfg: GridLifeConfig) -> None:
    """The fallback's rows when the internal rows cannot all hold, against their definition written in numpy: the
    barriers' position rows, then n.a * step >= -gamma_position * (|p - c| - r) + tightening per hot zone, n the
    unit normal from the zone's centre (a zero row at the centre itself); equal bit for bit."""
    core = ShieldCore(env_cfg, ShieldConfig())
    barriers, layout = core.barriers, core.barriers.layout
    rng = np.random.default_rng(5)
    pos = rng.uniform(-1.0, env_cfg.arena_size + 1.0, size=(500, 2))
    pos[0] = layout.hot_centres[0]
    rows = barriers.constraints(pos, rng.uniform(0.0, 1.0, size=(500, 3)))
    A, b = core.fallback._keep_out_rows(pos, rows.A, rows.b)
    k = barriers.n_position_rows
    rel = pos[:, None, :] - layout.hot_centres
    dist = np.linalg.norm(rel, axis=-1)
    normal = rel / np.maximum(dist, 1e-9)[..., None]
    np.testing.assert_array_equal(A, np.concatenate([rows.A[:, :k], barriers.step_len * normal], axis=1))
    gap = dist - layout.hot_radii
    b_hot = -barriers.cfg.gamma_position * gap + barriers.cfg.row_tightening
    np.testing.assert_array_equal(b, np.concatenate([rows.b[:, :k], b_hot], axis=1))
    assert A.shape == (500, k + len(layout.hot_radii), 2) and not A[0, k].any()


def test_model_disagreement_goes_to_fallback(env_cfg: GridLifeConfig) -> None:
    cfg = ShieldConfig(filter="ensemble")
    core = ShieldCore(env_cfg, cfg, viability_models=[constant_net(1.0), constant_net(-1.0)])
    d = core.step(0, np.array([[5.0, 9.0]]), COMFORT[None], np.zeros((1, 2)), 0.0)
    assert d.cause == ["disagreement"] and core.counts["degraded.disagreement"] == 1


def test_bad_input_stands_still(env_cfg: GridLifeConfig) -> None:
    core = ShieldCore(env_cfg, ShieldConfig())
    h = np.array([[np.nan, 0.4, 1.0], [0.8, 0.4, 1.0]])
    d = core.step(0, np.array([[5.0, 9.0], [5.0, 9.0]]), h, np.array([[1.0, 0.0], [np.inf, 0.0]]), 0.0)
    assert d.cause[0] == "bad_input" and np.all(d.actions[0] == 0)
    assert core.counts["degraded.bad_input"] == 1
    with pytest.raises(ValueError, match="internal"):
        core.step(1, np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)), 0.0)


def test_a_state_no_arena_can_be_in_is_bad_input(env_cfg: GridLifeConfig) -> None:
    """Finite but absurd states (a position far outside the arena, an internal variable far outside [0, 1]) would
    overflow the barrier rows: they are bad input, and the arena stands still."""
    core = ShieldCore(env_cfg, ShieldConfig())
    size = env_cfg.arena_size
    pos = np.array([[1e200, 5.0], [5.0, -1.5 * size], [5.0, 9.0], [5.0, 9.0], [5.0, 9.0]])
    h = np.array([COMFORT, COMFORT, [1e308, 0.2, 0.9], [0.9, -3.0, 0.9], COMFORT])
    d = core.step(0, pos, h, np.full((5, 2), 0.5), 0.0)
    assert d.cause == ["bad_input"] * 4 + [None]
    assert np.all(d.actions[:4] == 0) and core.counts["degraded.bad_input"] == 4


def test_every_cause_is_counted_and_reports_are_json(env_cfg: GridLifeConfig) -> None:
    core = ShieldCore(env_cfg, ShieldConfig())
    pos, push = on_hazard_edge(core)
    d = core.step(7, pos[None], COMFORT[None], push[None], 0.0)
    assert len(d.reports) == 1
    report = json.loads(json.dumps(d.reports[0]))
    assert set(report) == {
        "step", "arena", "mode", "cause", "constraint", "margin_before", "margin_after", "proposed", "safe"
    }  # fmt: skip
    assert report["step"] == 7 and report["mode"] == "filtered" and report["constraint"].startswith("hazard")
    assert report["margin_before"] < 0 <= report["margin_after"]
    assert set(core.fallback_reason_counts()) == set(CAUSES)


@pytest.mark.parametrize("name", ["qp", "search"])
def test_closed_loop_never_violates(env_cfg: GridLifeConfig, name: str) -> None:
    """Random proposals through the shield, whatever the filter: no executed violation in any arena, also
    where the one-step filter is infeasible or outside its safe set (the gatekeeper's backup takes over)."""
    core = ShieldCore(env_cfg, ShieldConfig(filter=name))
    env = GridLifeBatch(env_cfg, 16)
    env.reset(seed=1)
    rng = np.random.default_rng(2)
    for step in range(300):
        d = core.step(step, env.positions.copy(), env.internal.copy(), rng.uniform(-1, 1, size=(16, 2)), 0.0)
        assert not env.step(d.actions).violation.any()
    assert core.counts["gatekeeper.uncertified"] == 0
