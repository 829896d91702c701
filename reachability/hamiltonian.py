"""Numerical Hamiltonian: Lax-Friedrichs flux from one-sided gradients.

    V_tau = H(x, (p- + p+)/2) + sum_i alpha_i (p+_i - p-_i) / 2

The second term is the (local) Lax-Friedrichs dissipation with alpha_i >= |dH/dp_i| (``speeds``), which keeps
the scheme monotone where the gradient jumps. Control- and disturbance-affine dynamics take the compiled
closed form in ``affine_terms``; any other dynamics go through ``Dynamics.hamiltonian``.
"""

from __future__ import annotations

import numpy as np

from reachability.affine_terms import AffineRate, AffineTerms
from reachability.derivatives import Derivative
from reachability.dynamics import ControlAndDisturbanceAffineDynamics, Dynamics
from reachability.grid import Grid


class LaxFriedrichsRate:
    """dV/dtau for the backward-in-time avoid problem (tau = -t) on a fixed grid; everything that depends on x
    alone (speeds, dynamics terms) is computed once here rather than at every Runge-Kutta stage."""

    def __init__(self, grid: Grid, dynamics: Dynamics, derivative: Derivative, speeds: np.ndarray) -> None:
        self.grid = grid
        self.dynamics = dynamics
        self.derivative = derivative
        self.speeds = speeds
        self.affine: AffineRate | None = None
        if isinstance(dynamics, ControlAndDisturbanceAffineDynamics):
            self.affine = AffineRate(AffineTerms.at_nodes(dynamics, grid.states), speeds)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if self.affine is not None:
            self.affine.start()
            for axis in range(self.grid.ndim):
                left, right = self.derivative(self.grid, values, axis)
                self.affine.add_axis(axis, left, right)
            return self.affine.finish().reshape(values.shape)
        return self._sampled(values)

    def _sampled(self, values: np.ndarray) -> np.ndarray:
        mean_grad = np.empty((*values.shape, self.grid.ndim))
        dissipation = np.zeros(values.shape)
        for axis in range(self.grid.ndim):
            left, right = self.derivative(self.grid, values, axis)
            mean_grad[..., axis] = 0.5 * (left + right)
            dissipation += 0.5 * self.speeds[..., axis] * (right - left)
        return self.dynamics.hamiltonian(self.grid.states, mean_grad) + dissipation
