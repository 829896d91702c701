"""Air3D: pursuit-evasion between two planes in relative coordinates (x, y, heading psi).

x' = -v_e + v_p cos(psi) + w_e y,  y' = v_p sin(psi) - w_e x,  psi' = w_p - w_e.
The evader (control w_e) keeps out of the collision disc of radius 5; the pursuer (disturbance w_p)
tries to enter it. The standard comparison setting: v_e = v_p = 5, |w| <= 1, grid 51x40x50, T = 2.8.
"""

from __future__ import annotations

import numpy as np

from reachability.dynamics import Box, ControlAndDisturbanceAffineDynamics
from reachability.problem import Problem

EVADER_SPEED, PURSUER_SPEED, EVADER_TURN, PURSUER_TURN, RADIUS = 5.0, 5.0, 1.0, 1.0, 5.0


def drift(s: np.ndarray) -> np.ndarray:
    psi = s[..., 2]
    return np.stack(
        [-EVADER_SPEED + PURSUER_SPEED * np.cos(psi), PURSUER_SPEED * np.sin(psi), np.zeros_like(psi)], axis=-1
    )


def control_matrix(s: np.ndarray) -> np.ndarray:
    g = np.zeros((*s.shape[:-1], 3, 1))
    g[..., 0, 0] = s[..., 1]
    g[..., 1, 0] = -s[..., 0]
    g[..., 2, 0] = -1.0
    return g


def disturbance_matrix(s: np.ndarray) -> np.ndarray:
    d = np.zeros((*s.shape[:-1], 3, 1))
    d[..., 2, 0] = 1.0
    return d


def constraint(s: np.ndarray) -> np.ndarray:
    return np.hypot(s[..., 0], s[..., 1]) - RADIUS


PROBLEM = Problem(
    name="air3d",
    description="pursuit-evasion in relative coordinates, keep out of the radius-5 collision disc",
    state_names=("x", "y", "psi"),
    lo=(-6.0, -10.0, 0.0),
    hi=(20.0, 10.0, 2 * np.pi),
    periodic=(False, False, True),
    default_grid=(51, 40, 50),
    default_horizon=2.8,
    dynamics=ControlAndDisturbanceAffineDynamics(
        drift,
        control_matrix,
        Box((-EVADER_TURN,), (EVADER_TURN,)),
        disturbance_matrix,
        Box((-PURSUER_TURN,), (PURSUER_TURN,)),
    ),
    constraint=constraint,
    scheme="pde",
    constants={"evader_speed": EVADER_SPEED, "pursuer_speed": PURSUER_SPEED, "radius": RADIUS},
)
