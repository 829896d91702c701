import numpy as np
import pytest

from reachability.compute import compute_kernel
from reachability.problems import get_problem


@pytest.mark.parametrize("n", [51, 101])
def test_energy_kernel_boundary_within_one_cell_of_closed_form(n: int) -> None:
    problem = get_problem("gridlife_energy")
    result = compute_kernel(problem, (n, n))
    distance, energy = result.grid.axes
    c_star = problem.constants["energy_per_metre"]
    assert c_star > 0
    # the kernel is upward closed in E: its lower edge per distance column is the boundary
    viable = result.value >= 0
    assert np.all(viable[:, -1]), "a full tank must be viable at every distance on the grid"
    assert np.all(np.diff(viable.astype(int), axis=1) >= 0), "kernel must be upward closed in energy"
    boundary = energy[np.argmax(viable, axis=1)]
    assert np.abs(boundary - c_star * distance).max() <= result.grid.spacing[1]


def test_internal_kernel_matches_closed_form_up_to_one_cell() -> None:
    problem = get_problem("gridlife_internal")
    result = compute_kernel(problem, (21, 21, 21))
    exact = problem.analytic_value(result.grid.states, result.metadata["horizon"])
    wrong = (result.value >= 0) != (exact >= 0)
    assert wrong.sum() < 0.1 * (exact >= 0).sum()
    assert np.all(np.abs(exact[wrong]) <= result.grid.spacing.max())


def test_constants_record_their_source() -> None:
    constants = get_problem("gridlife_energy").constants
    assert constants["source"] in ("nodes.env.gridlife.GridLifeConfig", "reachability defaults")
    assert constants["rho_refuel"] > constants["k_basal"] + constants["k_effort"]
