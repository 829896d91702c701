"""Viability constraints shipped for common Gymnasium environments (spec `nodes.env.constraints:NAME`).

Each maps one arena's `(obs, info)` to named margins, >= 0 while viable.
"""

from typing import Any

import numpy as np

PENDULUM_SPEED_LIMIT = 6.0  # rad/s; Pendulum-v1 itself clips |theta_dot| at 8


def pendulum_speed(obs: np.ndarray, info: dict[str, Any]) -> dict[str, float]:
    """Pendulum-v1 (obs = cos theta, sin theta, theta_dot): |theta_dot| <= PENDULUM_SPEED_LIMIT."""
    return {"speed": PENDULUM_SPEED_LIMIT - abs(float(obs[2]))}


def info_cost(obs: np.ndarray, info: dict[str, Any]) -> dict[str, float]:
    """Any env that reports a safety cost in info (the Safety-Gymnasium convention): the constraint cost <= 0,
    margin -cost. A reset's info carries no cost: margin 0. A cost that is not a finite number is refused by the
    env adapter, naming this spec."""
    return {"cost": -float(info.get("cost", 0.0))}
