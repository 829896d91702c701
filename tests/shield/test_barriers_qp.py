"""The known-dynamics CBF-QP keeps every barrier >= 0 at the next step under the true GridLife dynamics."""

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from nodes.env.gridlife import internal_step, next_position
from nodes.shield.barriers import GridLifeBarriers
from nodes.shield.qp import BarrierQP, QPConfig, feasible_one
from tests.shield.conftest import safe_states


def _next_values(barriers: GridLifeBarriers, pos: np.ndarray, h: np.ndarray, a: np.ndarray) -> np.ndarray:
    cfg = barriers.env_cfg
    p2 = next_position(pos, a.astype(np.float32), cfg)
    return barriers.values(p2, internal_step(h, p2, a.astype(np.float32), cfg, barriers.layout))


def test_every_action_meeting_the_rows_keeps_the_cbf_condition(barriers: GridLifeBarriers) -> None:
    """Soundness of the rows themselves, for arbitrary states and actions (not only QP solutions)."""
    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 10, size=(200_000, 2))
    h = rng.uniform(0, 1, size=(200_000, 3))
    a = rng.uniform(-1, 1, size=(200_000, 2))
    rows = barriers.constraints(pos, h)
    meets = np.all(np.einsum("nrk,nk->nr", rows.A, a) >= rows.b, axis=1)
    assert meets.sum() > 10_000
    slack = _next_values(barriers, pos, h, a) - (1 - barriers.gamma) * rows.values
    assert slack[meets].min() >= -1e-9


def test_qp_keeps_barriers_on_thousands_of_safe_states(barriers: GridLifeBarriers) -> None:
    pos, h = safe_states(barriers, 4000, seed=2)
    proposals = np.random.default_rng(3).uniform(-1, 1, size=(4000, 2))
    rows = barriers.constraints(pos, h)
    res = BarrierQP(barriers.n_rows, max_instances=8).solve(rows.A, rows.b, proposals)
    assert res.solved.sum() > 300  # the test exercises real projections, not only passes
    assert res.feasible.mean() > 0.99
    after = _next_values(barriers, pos[res.feasible], h[res.feasible], res.actions[res.feasible])
    assert after.min() >= -1e-9


@settings(max_examples=300, deadline=None)
@given(
    x=st.floats(0.0, 10.0),
    y=st.floats(0.0, 10.0),
    energy=st.floats(0.0, 1.0),
    temperature=st.floats(0.0, 1.0),
    integrity=st.floats(0.0, 1.0),
    ax=st.floats(-1.0, 1.0),
    ay=st.floats(-1.0, 1.0),
)
def test_qp_property_single_states(
    barriers: GridLifeBarriers, x: float, y: float, energy: float, temperature: float, integrity: float,
    ax: float, ay: float,
) -> None:  # fmt: skip
    pos, h = np.array([[x, y]]), np.array([[energy, temperature, integrity]])
    if barriers.values(pos, h).min() < 0:
        return  # outside the safe set nothing is promised
    rows = barriers.constraints(pos, h)
    res = BarrierQP(barriers.n_rows).solve(rows.A, rows.b, np.array([[ax, ay]]))
    if res.feasible[0]:
        assert _next_values(barriers, pos, h, res.actions).min() >= -1e-9
    else:
        assert np.all(res.actions == 0.0)


def _path_blocked(barriers: GridLifeBarriers, pos: np.ndarray, kind: str) -> np.ndarray:
    """The straight segment to the barrier's station crosses a hazard or a hot-zone band."""
    lay = barriers.layout
    centres, _ = barriers.stations[kind]
    gap = np.linalg.norm(pos[:, None] - centres, axis=-1) - barriers.deep_radius[kind]
    goal = centres[np.argmin(gap, axis=1)]
    discs = np.concatenate([lay.hazard_centres, lay.hot_centres])
    radii = np.concatenate([lay.hazard_radii, barriers.hot_reach])
    d = goal - pos
    length = np.linalg.norm(d, axis=1, keepdims=True)
    u = d / np.maximum(length, 1e-9)
    t = np.clip(((discs[None] - pos[:, None]) * u[:, None]).sum(-1), 0, length)
    closest = pos[:, None] + t[..., None] * u[:, None]
    return (np.linalg.norm(closest - discs[None], axis=-1) < radii + 0.05).any(axis=1)


def test_qp_feasible_on_a_grid_inside_the_safe_set(barriers: GridLifeBarriers) -> None:
    """Grid over positions and internal states in {h >= 0}. The barriers are built so that one barrier at
    its boundary can always be served by heading for its station; two urgent needs in different directions,
    or an obstacle on the straight path, are outside that promise (the shield degrades there)."""
    xs = np.linspace(0.05, 9.95, 24)
    levels = np.linspace(0.0, 1.0, 6)
    grid_pos = np.array(list(itertools.product(xs, xs)))
    grid_h = np.array(list(itertools.product(levels, levels, levels)))
    pos = np.repeat(grid_pos, len(grid_h), axis=0)
    h = np.tile(grid_h, (len(grid_pos), 1))
    values = barriers.values(pos, h)
    inside = values.min(axis=1) >= 0.0
    pos, h, values = pos[inside], h[inside], values[inside]
    internal = values[:, -3:]
    keep = (internal < 0.2).sum(axis=1) <= 1
    need = np.argmin(internal, axis=1)
    for k, kind in enumerate(("refuel", "cool", "repair")):
        sel = keep & (need == k)
        keep[sel] &= ~_path_blocked(barriers, pos[sel], kind)
    pos, h = pos[keep], h[keep]
    assert len(pos) > 10_000 and (barriers.values(pos, h)[:, -3:].min(axis=1) < 0.05).sum() > 200
    rows = barriers.constraints(pos, h)
    qp = BarrierQP(barriers.n_rows, QPConfig(layout="block"))
    feasible = np.concatenate(
        [qp.solve(rows.A[i : i + 2048], rows.b[i : i + 2048], np.zeros((len(rows.b[i : i + 2048]), 2))).feasible
         for i in range(0, len(pos), 2048)]
    )  # fmt: skip
    assert feasible.all(), f"infeasible at {pos[~feasible][:3]}, {h[~feasible][:3]}"


def test_qp_is_set_up_once_and_updated(barriers: GridLifeBarriers) -> None:
    qp = BarrierQP(barriers.n_rows)
    pos, h = safe_states(barriers, 64, seed=4)
    rng = np.random.default_rng(5)
    for _ in range(30):
        rows = barriers.constraints(pos, h)
        qp.solve(rows.A, rows.b, rng.uniform(-1, 1, size=(64, 2)))
    assert qp.setups <= 64  # at most one per arena slot, never one per step


def test_block_and_per_arena_layouts_agree(barriers: GridLifeBarriers) -> None:
    pos, h = safe_states(barriers, 200, seed=6)
    proposals = np.random.default_rng(7).uniform(-1, 1, size=(200, 2))
    rows = barriers.constraints(pos, h)
    a = BarrierQP(barriers.n_rows, QPConfig(layout="per_arena")).solve(rows.A, rows.b, proposals)
    b = BarrierQP(barriers.n_rows, QPConfig(layout="block")).solve(rows.A, rows.b, proposals)
    np.testing.assert_array_equal(a.feasible, b.feasible)
    np.testing.assert_allclose(a.actions[a.feasible], b.actions[b.feasible], atol=1e-4)


def test_uncertainty_tightens(barriers: GridLifeBarriers) -> None:
    h = np.array([[0.5, 0.5, 0.5]])
    worse = barriers.pessimistic(h, np.array([[0.05, 0.05, 0.05]]))
    pos = np.array([[5.0, 5.0]])
    assert np.all(barriers.values(pos, worse)[0, -3:] < barriers.values(pos, h)[0, -3:])


def _robust_margin(A: np.ndarray, b: np.ndarray) -> float:
    """max t such that some a in the box has A a - b >= t on every row (scipy's LP, independent of ours)."""
    res = linprog(c=[0.0, 0.0, -1.0], A_ub=np.hstack([-A, np.ones((len(b), 1))]), b_ub=-b,
                  bounds=[(-1, 1), (-1, 1), (None, 10.0)], method="highs")  # fmt: skip
    assert res.status == 0
    return float(res.x[2])


def test_presolve_agrees_with_a_linear_program_on_feasibility(barriers: GridLifeBarriers) -> None:
    """Infeasible rows are caught before OSQP; the exact vertex check must agree with an LP, state by state."""
    rng = np.random.default_rng(5)
    pos = rng.uniform(0, 10, size=(600, 2))
    h = rng.uniform(0, 1, size=(600, 3))  # many outside the safe set, where the rows often admit no action
    rows = barriers.constraints(pos, h)
    found = np.array([feasible_one(rows.A[i], rows.b[i], 0.0) for i in range(600)])
    margins = np.array([_robust_margin(rows.A[i], rows.b[i]) for i in range(600)])
    clear = np.abs(margins) > 1e-7
    assert (margins[clear] < 0).sum() > 20 and (margins[clear] > 0).sum() > 20  # both kinds exercised
    np.testing.assert_array_equal(found[clear], margins[clear] > 0)


def test_infeasible_problems_never_reach_the_solver(barriers: GridLifeBarriers) -> None:
    rng = np.random.default_rng(6)
    rows = barriers.constraints(rng.uniform(0, 10, size=(2000, 2)), rng.uniform(0, 1, size=(2000, 3)))
    infeasible = ~np.array([feasible_one(rows.A[i], rows.b[i], 1e-6) for i in range(2000)])
    assert infeasible.sum() > 20
    qp = BarrierQP(barriers.n_rows)
    res = qp.solve(rows.A[infeasible], rows.b[infeasible], rng.uniform(-1, 1, size=(int(infeasible.sum()), 2)))
    assert not res.feasible.any() and np.all(res.actions == 0)
    assert qp.setups == 0  # not one OSQP problem was even built


def test_a_nan_proposal_never_comes_back_as_a_feasible_action(barriers: GridLifeBarriers) -> None:
    pos, h = safe_states(barriers, 4, seed=7)
    rows = barriers.constraints(pos, h)
    res = BarrierQP(barriers.n_rows).solve(rows.A, rows.b, np.array([[np.nan, 0.0], [0.0, np.nan]] * 2))
    assert np.isfinite(res.actions).all()
    assert np.all(res.actions[~res.feasible] == 0.0)
    assert np.all(res.slack[res.feasible] >= -1e-6)
