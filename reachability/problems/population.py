"""Population model (Aubin): x' = x y, y' = u, |u| <= c, K = [a, b] x R.

Viab(K) = {a <= x <= b, -sqrt(2 c ln(x / a)) <= y <= sqrt(2 c ln(b / x))}, with a = 0.2, b = 3, c = 0.5.
"""

from __future__ import annotations

import numpy as np

from reachability.dynamics import Box, ControlAndDisturbanceAffineDynamics
from reachability.problem import Problem

A, B, C = 0.2, 3.0, 0.5


def drift(s: np.ndarray) -> np.ndarray:
    return np.stack([s[..., 0] * s[..., 1], np.zeros_like(s[..., 0])], axis=-1)


def control_matrix(s: np.ndarray) -> np.ndarray:
    g = np.zeros((*s.shape[:-1], 2, 1))
    g[..., 1, 0] = 1.0
    return g


def constraint(s: np.ndarray) -> np.ndarray:
    return np.minimum(s[..., 0] - A, B - s[..., 0])


def analytic_kernel(s: np.ndarray, horizon: float) -> np.ndarray:
    x, y = s[..., 0], s[..., 1]
    inside = (x >= A) & (x <= B)
    safe_x = np.clip(x, A, B)
    upper = np.sqrt(2 * C * np.log(B / safe_x))
    lower = -np.sqrt(2 * C * np.log(safe_x / A))
    return inside & (y >= lower) & (y <= upper)


PROBLEM = Problem(
    name="population",
    description=f"x' = x y, y' = u, |u| <= {C}, keep {A} <= x <= {B}",
    state_names=("x", "y"),
    lo=(0.0, -2.0),
    hi=(3.2, 2.0),
    default_grid=(101, 101),
    default_horizon=10.0,
    dynamics=ControlAndDisturbanceAffineDynamics(drift, control_matrix, Box((-C,), (C,))),
    constraint=constraint,
    scheme="semi_lagrangian",
    semi_lagrangian_dt=0.05,
    analytic_kernel=analytic_kernel,
    constants={"a": A, "b": B, "c": C},
)
