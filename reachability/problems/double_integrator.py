"""Double integrator between walls: x' = v, v' = u, |u| <= 1, K = {|x| <= 1}.

Known answer (infinite horizon, reached once T >= max |v| on the grid, the longest braking time):
V*(x, v) = min(1 - x - max(v, 0)^2 / 2, 1 + x - max(-v, 0)^2 / 2).
"""

from __future__ import annotations

import numpy as np

from reachability.dynamics import Box, ControlAndDisturbanceAffineDynamics
from reachability.problem import Problem


def drift(x: np.ndarray) -> np.ndarray:
    return np.stack([x[..., 1], np.zeros_like(x[..., 1])], axis=-1)


def control_matrix(x: np.ndarray) -> np.ndarray:
    g = np.zeros((*x.shape[:-1], 2, 1))
    g[..., 1, 0] = 1.0
    return g


def constraint(x: np.ndarray) -> np.ndarray:
    return 1.0 - np.abs(x[..., 0])


def analytic_value(x: np.ndarray, horizon: float) -> np.ndarray:
    pos, vel = x[..., 0], x[..., 1]
    return np.minimum(1 - pos - np.maximum(vel, 0) ** 2 / 2, 1 + pos - np.maximum(-vel, 0) ** 2 / 2)


PROBLEM = Problem(
    name="double_integrator",
    description="x' = v, v' = u, |u| <= 1, stay within |x| <= 1",
    state_names=("x", "v"),
    lo=(-1.0, -1.0),
    hi=(1.0, 1.0),
    default_grid=(101, 101),
    default_horizon=1.0,
    dynamics=ControlAndDisturbanceAffineDynamics(drift, control_matrix, Box((-1.0,), (1.0,))),
    constraint=constraint,
    scheme="pde",
    analytic_value=analytic_value,
)
