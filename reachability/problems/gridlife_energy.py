"""GridLife energy against distance to the nearest refuel station.

State (d, E): d = distance from the agent to the edge of the refuel station (0 inside), E = energy.
Away from the station the agent moves straight at it at radial speed vmax * s, s in [-1, 1], paying
effort |a|^2 / 2 = s^2 / 2 (the box action is used only up to its inscribed disc, so the real agent can
do at least this well and the kernel is an inner, safe approximation; hazards on the way are ignored):

    d' = -vmax s,   E' = -(k_basal + k_effort s^2 / 2) + rho_refuel 1[d <= 0]

Closed form: the cheapest energy per metre is c* = min_{0<s<=1} (k_basal + k_effort s^2 / 2) / (vmax s),
at s* = min(1, sqrt(2 k_basal / k_effort)); the value (lowest energy on the way, best speed) is
V*(d, E) = E - c* d once the horizon covers the trip, and the kernel is {E >= c* d}.
"""

from __future__ import annotations

import math

import numpy as np

from reachability.dynamics import Box, SampledDynamics
from reachability.problem import Problem
from reachability.problems.gridlife_constants import load_constants

CONSTANTS, PROVENANCE = load_constants()
MAX_DISTANCE = CONSTANTS.arena_size  # beyond the arena size the kernel boundary is past the E = 1 cap anyway


def best_speed() -> float:
    return min(1.0, math.sqrt(2 * CONSTANTS.k_basal / CONSTANTS.k_effort)) if CONSTANTS.k_effort > 0 else 1.0


def energy_per_metre() -> float:
    s = best_speed()
    return (CONSTANTS.k_basal + CONSTANTS.k_effort * s * s / 2) / (CONSTANTS.vmax * s)


def dynamics_fn(x: np.ndarray, u: np.ndarray, d: np.ndarray) -> np.ndarray:
    s = u[..., 0]
    at_station = x[..., 0] <= 0
    dist_rate = np.where(at_station & (s > 0), 0.0, -CONSTANTS.vmax * s)  # d cannot go below 0
    energy_rate = -(CONSTANTS.k_basal + CONSTANTS.k_effort * s * s / 2) + CONSTANTS.rho_refuel * at_station
    return np.stack([dist_rate, energy_rate], axis=-1)


def speed_bound(x: np.ndarray) -> np.ndarray:
    bound = np.empty_like(x)
    bound[..., 0] = CONSTANTS.vmax
    bound[..., 1] = CONSTANTS.k_basal + CONSTANTS.k_effort / 2 + CONSTANTS.rho_refuel
    return bound


def constraint(x: np.ndarray) -> np.ndarray:
    return x[..., 1]


def analytic_value(x: np.ndarray, horizon: float) -> np.ndarray:
    return x[..., 1] - energy_per_metre() * np.maximum(x[..., 0], 0.0)


PROBLEM = Problem(
    name="gridlife_energy",
    description="GridLife energy E vs distance d to the refuel station; kernel E >= c* d",
    state_names=("d_refuel", "energy"),
    # E below 0 is on the grid so that running dry is a successor with a negative value, not a clamp at 0
    lo=(0.0, -0.25),
    hi=(MAX_DISTANCE, 1.0),
    default_grid=(101, 101),
    # long enough that standing still (losing k_basal per second) is worse than the trip from anywhere
    default_horizon=2.0
    * max(MAX_DISTANCE / (CONSTANTS.vmax * best_speed()), energy_per_metre() * MAX_DISTANCE / CONSTANTS.k_basal),
    dynamics=SampledDynamics(dynamics_fn, Box((-1.0,), (1.0,)), samples_per_axis=21, speed_bound=speed_bound),
    constraint=constraint,
    scheme="semi_lagrangian",
    semi_lagrangian_dt=0.1,
    analytic_value=analytic_value,
    constants={**CONSTANTS.__dict__, **PROVENANCE, "energy_per_metre": energy_per_metre()},
)
