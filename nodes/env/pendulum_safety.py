"""Pendulum-v1's speed limit (`nodes.env.constraints:pendulum_speed`, |theta_dot| <= 6) described for the shield:
a model (`speed_model`, filter search), affine rows derived from it (`speed_rows`, filter qp) and a backup
policy (`brake`). Copy this file to describe your own environment (docs/shield.md, "Your own environment").

A one-step limit on the speed is not enough: gravity (15 sin theta rad/s^2) outpulls the torque (at most
3 * 2 = 6 rad/s^2), so a pendulum falling fast enough towards the bottom breaks the limit whatever it does next.
So the margin that matters is the braking margin: the least speed margin along the rollout of `brake` (full
torque against the motion) over the next HORIZON steps, with Pendulum-v1's own equations. A state whose braking
rollout keeps the limit has a successor that does too (brake: the same rollout one step on), so the set
{braking margin >= 0} can always be kept (up to the horizon); a pendulum at rest anywhere is inside it, so it
may still swing up and stand.
"""

from __future__ import annotations

import math

import numpy as np

G_TERM, TORQUE_TERM, DT, MAX_SPEED, MAX_TORQUE = 15.0, 3.0, 0.05, 8.0, 2.0  # Pendulum-v1: 3g/2l, 3/ml^2, dt
SPEED_LIMIT = 6.0  # as nodes.env.constraints.PENDULUM_SPEED_LIMIT
SPEED_MARGIN = 0.05  # kept inside the limit (the shield sees float32 observations)
HORIZON = 60  # braking rollout, steps (3 s: longer than a fall from near the top)
BISECTIONS = 12


def pendulum_step(theta: float, speed: float, torque: float) -> tuple[float, float]:
    """One step of Pendulum-v1 (gymnasium's classic_control/pendulum.py)."""
    torque = min(max(torque, -MAX_TORQUE), MAX_TORQUE)
    speed = min(max(speed + (G_TERM * math.sin(theta) + TORQUE_TERM * torque) * DT, -MAX_SPEED), MAX_SPEED)
    return theta + speed * DT, speed


def braking_margin(theta: float, speed: float) -> float:
    """The least of SPEED_LIMIT - SPEED_MARGIN - |theta_dot| from this state along HORIZON steps of braking."""
    least = SPEED_LIMIT - SPEED_MARGIN - abs(speed)
    for _ in range(HORIZON):
        theta, speed = pendulum_step(theta, speed, -MAX_TORQUE * math.copysign(1.0, speed))
        least = min(least, SPEED_LIMIT - SPEED_MARGIN - abs(speed))
    return least


def speed_model(state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model for the search filter: Pendulum-v1's step from its observation (cos, sin, theta_dot) and the torque;
    the margin of the next state is its braking margin (which starts with its own speed margin)."""
    cos, sin, speed = (float(v) for v in state[:3])
    theta, speed = pendulum_step(math.atan2(sin, cos), speed, float(action[0]))
    return np.array([math.cos(theta), math.sin(theta), speed]), np.array([braking_margin(theta, speed)])


def speed_rows(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Affine rows A u <= b for the qp filter: one row, s u <= s u_max with s the direction of motion. More
    braking never hurts, so the safe torques run from full braking to some u_max, found by bisection on the
    model's margin. Where even full braking is unsafe the row asks for more than the box allows, the QP is
    infeasible and the shield falls back (to `brake`, when it is the backup)."""
    s = math.copysign(1.0, float(obs[2]))

    def safe(u: float) -> bool:
        return bool(speed_model(obs, np.array([u]))[1][0] >= 0)

    if not safe(-s * MAX_TORQUE):
        return np.array([[s]]), np.array([-MAX_TORQUE - 1.0])
    lo, hi = 0.0, 1.0  # fraction of the way from full braking to full acceleration
    if safe(s * MAX_TORQUE):
        lo = 1.0
    else:
        for _ in range(BISECTIONS):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if safe(s * MAX_TORQUE * (2 * mid - 1)) else (lo, mid)
    return np.array([[s]]), np.array([MAX_TORQUE * (2 * lo - 1)])


def brake(obs: np.ndarray) -> np.ndarray:
    """Backup: full torque against the motion."""
    return np.array([-MAX_TORQUE * math.copysign(1.0, float(obs[2]))])
