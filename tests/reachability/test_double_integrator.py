import numpy as np
import pytest

from reachability.compute import compute_kernel
from reachability.problems import get_problem

PROBLEM = get_problem("double_integrator")


def interior_error(n: int, accuracy: str) -> tuple[np.ndarray, np.ndarray, float]:
    result = compute_kernel(PROBLEM, (n, n), accuracy=accuracy)
    exact = PROBLEM.analytic_value(result.grid.states, result.metadata["horizon"])
    k = max(1, n // 20)  # interior: 5% away from every grid edge
    inner = (slice(k, -k), slice(k, -k))
    return result.value[inner], exact[inner], float(result.grid.spacing.max())


def test_high_accuracy_101_within_tolerance_and_no_sign_errors() -> None:
    value, exact, dx = interior_error(101, "high")
    assert np.abs(value - exact).max() <= 0.05
    clear = np.abs(exact) > 2 * dx
    assert np.array_equal(value[clear] >= 0, exact[clear] >= 0)


@pytest.mark.parametrize(("accuracy", "coarse", "fine"), [("low", 101, 201), ("high", 51, 101)])
def test_error_roughly_halves_when_spacing_halves(accuracy: str, coarse: int, fine: int) -> None:
    v1, e1, _ = interior_error(coarse, accuracy)
    v2, e2, _ = interior_error(fine, accuracy)
    err1, err2 = np.abs(v1 - e1).max(), np.abs(v2 - e2).max()
    assert err2 <= 0.6 * err1, (err1, err2)


def test_value_never_exceeds_constraint() -> None:
    result = compute_kernel(PROBLEM, (41, 41), accuracy="medium")
    assert np.all(result.value <= PROBLEM.constraint(result.grid.states) + 1e-12)
