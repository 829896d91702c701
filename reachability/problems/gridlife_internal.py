"""GridLife internal variables (E, T, I) without any station, over a horizon.

The agent chooses its effort e = |a|^2 / 2 in [0, 1]; hot-zone exposure w in [0, 1] is a disturbance
(the layout may force the agent through a hot zone). From the env's documented dynamics:

    E' = -(k_basal + k_effort e),   T' = eta_basal + eta_effort e + eta_hot w,   I' = -omega_wear e

K = {E >= 0, T <= 1, I >= 0}. This kernel answers: from which internal states does the agent live
through the horizon H with no station at all, whatever the hot zones do? Resting (e = 0) is best and
w = 1 worst, so the value is V*(E, T, I) = min(E - k_basal H, 1 - T - (eta_basal + eta_hot) H, I).
"""

from __future__ import annotations

import numpy as np

from reachability.dynamics import Box, ControlAndDisturbanceAffineDynamics
from reachability.problem import Problem
from reachability.problems.gridlife_constants import load_constants

CONSTANTS, PROVENANCE = load_constants()


def drift(x: np.ndarray) -> np.ndarray:
    f = np.zeros_like(x)
    f[..., 0] = -CONSTANTS.k_basal
    f[..., 1] = CONSTANTS.eta_basal
    return f


def control_matrix(x: np.ndarray) -> np.ndarray:
    g = np.zeros((*x.shape[:-1], 3, 1))
    g[..., 0, 0] = -CONSTANTS.k_effort
    g[..., 1, 0] = CONSTANTS.eta_effort
    g[..., 2, 0] = -CONSTANTS.omega_wear
    return g


def disturbance_matrix(x: np.ndarray) -> np.ndarray:
    d = np.zeros((*x.shape[:-1], 3, 1))
    d[..., 1, 0] = CONSTANTS.eta_hot
    return d


def constraint(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.minimum(x[..., 0], 1.0 - x[..., 1]), x[..., 2])


def analytic_value(x: np.ndarray, horizon: float) -> np.ndarray:
    energy = x[..., 0] - CONSTANTS.k_basal * horizon
    temperature = 1.0 - x[..., 1] - (CONSTANTS.eta_basal + CONSTANTS.eta_hot) * horizon
    return np.minimum(np.minimum(energy, temperature), x[..., 2])


PROBLEM = Problem(
    name="gridlife_internal",
    description="GridLife (energy, temperature, integrity) with no station, worst-case hot zones",
    state_names=("energy", "temperature", "integrity"),
    # the box reaches past K (E < 0, T > 1, I < 0) so that the exits are interior, not grid edges
    lo=(-0.25, 0.0, -0.25),
    hi=(1.0, 1.25, 1.0),
    default_grid=(41, 41, 41),
    default_horizon=5.0,
    dynamics=ControlAndDisturbanceAffineDynamics(
        drift, control_matrix, Box((0.0,), (1.0,)), disturbance_matrix, Box((0.0,), (1.0,))
    ),
    constraint=constraint,
    scheme="pde",
    analytic_value=analytic_value,
    constants={**CONSTANTS.__dict__, **PROVENANCE},
)
