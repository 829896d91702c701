import numpy as np
import pytest

from reachability.compute import compute_kernel
from reachability.grid import Grid
from reachability.problems import get_problem
from reachability.semi_lagrangian import solve_viability

PROBLEM = get_problem("population")


def mismatch(grid: Grid, value: np.ndarray) -> float:
    known = PROBLEM.known_kernel(grid.states, 0.0)
    return float(((value >= 0) != known).sum() / known.sum())


def test_box_contains_analytic_kernel() -> None:
    grid = PROBLEM.grid((101, 101))
    a, b, c = PROBLEM.constants["a"], PROBLEM.constants["b"], PROBLEM.constants["c"]
    assert grid.lo[0] < a and grid.hi[0] > b
    assert grid.hi[1] > np.sqrt(2 * c * np.log(b / a)) and grid.lo[1] < -np.sqrt(2 * c * np.log(b / a))


@pytest.mark.parametrize(("n", "limit"), [(101, 0.025), (201, 0.015)])
def test_kernel_mismatch(n: int, limit: float) -> None:
    result = compute_kernel(PROBLEM, (n, n))
    assert mismatch(result.grid, result.value) <= limit


def test_nearest_node_snapping_would_be_worse() -> None:
    # snapping successors to the nearest node is the over-approximation the interpolating scheme avoids
    grid = PROBLEM.grid((101, 101))
    coarse_grid = Grid.from_box(grid.lo, grid.hi, grid.shape)
    interpolated, _ = solve_viability(
        coarse_grid, PROBLEM.dynamics, PROBLEM.constraint(grid.states), 10.0, PROBLEM.semi_lagrangian_dt, 1e-9
    )
    snapped = _snapped_kernel(grid)
    assert mismatch(grid, interpolated) < 0.5 * mismatch(grid, snapped)


def _snapped_kernel(grid: Grid) -> np.ndarray:
    from reachability.semi_lagrangian import successor

    states, dt = grid.states, PROBLEM.semi_lagrangian_dt
    limit = PROBLEM.constraint(states)
    nearest = []
    for u in PROBLEM.dynamics.control_samples():
        idx = np.rint(grid.fractional_index(successor(PROBLEM.dynamics, states, u, np.zeros(0), dt))).astype(int)
        nearest.append(tuple(idx[..., i] for i in range(grid.ndim)))
    value = limit.copy()
    for _ in range(200):
        value = np.minimum(limit, np.max([value[idx] for idx in nearest], axis=0))
    return value
