import numpy as np
import pytest

from reachability.derivatives import SCHEMES
from reachability.grid import Grid
from reachability.hamiltonian import LaxFriedrichsRate
from reachability.problems import get_problem
from reachability.time_integration import cfl_step


def test_grid_rejects_bad_boxes() -> None:
    with pytest.raises(ValueError, match="axis 0"):
        Grid.from_box([1.0], [0.0], [11])
    with pytest.raises(ValueError, match="at least 5"):
        Grid.from_box([0.0], [1.0], [3])
    with pytest.raises(ValueError, match="one entry per dimension"):
        Grid.from_box([0.0, 0.0], [1.0], [11, 11])


def test_padding_extrapolates_linear_functions_exactly() -> None:
    grid = Grid.from_box([0.0, -1.0], [1.0, 1.0], [11, 9])
    values = 2.0 * grid.states[..., 0] - 3.0 * grid.states[..., 1]
    padded = grid.pad(values, 0, 3)
    xs = grid.lo[0] + grid.spacing[0] * np.arange(-3, 14)
    np.testing.assert_allclose(padded[:, 4], 2.0 * xs - 3.0 * grid.axes[1][4])


def test_interpolation_is_exact_for_bilinear_functions_and_wraps_periodic_axes() -> None:
    grid = Grid.from_box([0.0, 0.0], [2.0, 2 * np.pi], [9, 16], [False, True])
    f = lambda p: 1.0 + p[..., 0] * 0.5 + 0.0 * p[..., 1]  # noqa: E731
    points = np.random.default_rng(0).uniform([0, 0], [2, 2 * np.pi], (50, 2))
    np.testing.assert_allclose(grid.interpolate(f(grid.states), points), f(points))
    periodic = np.cos(grid.states[..., 1])
    np.testing.assert_allclose(
        grid.interpolate(periodic, np.array([[1.0, 2 * np.pi]])), grid.interpolate(periodic, np.array([[1.0, 0.0]]))
    )


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_derivatives_exact_on_linear_functions(name: str) -> None:
    grid = Grid.from_box([0.0, 0.0], [1.0, 2.0], [21, 17])
    values = 3.0 * grid.states[..., 0] - 0.5 * grid.states[..., 1]
    for axis, slope in ((0, 3.0), (1, -0.5)):
        left, right = SCHEMES[name](grid, values, axis)
        np.testing.assert_allclose(left, slope, atol=1e-9)
        np.testing.assert_allclose(right, slope, atol=1e-9)


@pytest.mark.parametrize(("name", "order"), [("upwind_first", 1), ("eno2", 2), ("weno5", 4)])
def test_derivative_convergence_order(name: str, order: int) -> None:
    errors = []
    for n in (41, 81):
        grid = Grid.from_box([0.0], [2 * np.pi], [n], [True])
        values = np.sin(grid.axes[0])
        left, right = SCHEMES[name](grid, values, 0)
        errors.append(max(np.abs(left - np.cos(grid.axes[0])).max(), np.abs(right - np.cos(grid.axes[0])).max()))
    assert np.log2(errors[0] / errors[1]) >= order - 0.3


def test_cfl_step_rejects_bad_cfl() -> None:
    with pytest.raises(ValueError, match="cfl"):
        cfl_step(np.ones((4, 2)), np.array([0.1, 0.1]), 1.5)
    assert cfl_step(np.ones((4, 2)), np.array([0.1, 0.1]), 0.5) == pytest.approx(0.025)


def test_weno5_on_a_periodic_middle_axis_of_a_3d_grid() -> None:
    grid = Grid.from_box([0.0, 0.0, 0.0], [1.0, 2 * np.pi, 1.0], [7, 64, 6], [False, True, False])
    values = np.sin(grid.states[..., 1]) + grid.states[..., 0] * grid.states[..., 2]
    left, right = SCHEMES["weno5"](grid, values, 1)
    slope = np.cos(grid.states[..., 1])
    assert np.abs(left - slope).max() < 1e-5
    assert np.abs(right - slope).max() < 1e-5


def test_closed_form_affine_rate_matches_the_generic_hamiltonian() -> None:
    problem = get_problem("air3d")  # control- and disturbance-affine, with a periodic axis
    grid = problem.grid((13, 11, 12))
    values = problem.constraint(grid.states) + 0.3 * np.sin(3 * grid.states[..., 2]) * grid.states[..., 1]
    speeds = problem.dynamics.partial_max(grid.states)
    rate = LaxFriedrichsRate(grid, problem.dynamics, SCHEMES["weno5"], speeds)
    assert rate.affine is not None
    mean_grad = np.empty((*grid.shape, grid.ndim))
    expected = np.zeros(grid.shape)
    for axis in range(grid.ndim):
        left, right = SCHEMES["weno5"](grid, values, axis)
        mean_grad[..., axis] = 0.5 * (left + right)
        expected += 0.5 * speeds[..., axis] * (right - left)
    expected += problem.dynamics.hamiltonian(grid.states, mean_grad)
    np.testing.assert_allclose(rate(values), expected, rtol=1e-12, atol=1e-12)
