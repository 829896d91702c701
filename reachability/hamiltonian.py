"""Numerical Hamiltonian: Lax-Friedrichs flux from one-sided gradients."""

from __future__ import annotations

import numpy as np

from reachability.derivatives import Derivative
from reachability.dynamics import Dynamics
from reachability.grid import Grid


def lax_friedrichs_rate(
    grid: Grid,
    dynamics: Dynamics,
    states: np.ndarray,
    values: np.ndarray,
    derivative: Derivative,
    speeds: np.ndarray,
) -> np.ndarray:
    """dV/dtau for the backward-in-time avoid problem, tau = -t:

        V_tau = H(x, (p- + p+)/2) + sum_i alpha_i (p+_i - p-_i) / 2

    The second term is the (local) Lax-Friedrichs dissipation with alpha_i >= |dH/dp_i| (``speeds``),
    which keeps the scheme monotone where the gradient jumps.
    """
    mean_grad = np.empty((*values.shape, grid.ndim))
    dissipation = np.zeros(values.shape)
    for axis in range(grid.ndim):
        left, right = derivative(grid, values, axis)
        mean_grad[..., axis] = 0.5 * (left + right)
        dissipation += 0.5 * speeds[..., axis] * (right - left)
    return dynamics.hamiltonian(states, mean_grad) + dissipation
