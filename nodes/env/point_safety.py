"""Descriptions of the safe sets of `nodes/env/point_envs.py` for the shield, each exact: affine rows (filter qp)
and a model (filter search) per env. Copy one to describe your own environment (docs/shield.md).

EDGE keeps the descriptions a hair inside the constraint: the env rounds its state to float32 after each step.
"""

from __future__ import annotations

import numpy as np

from nodes.env.point_envs import DT

EDGE = 1.0 - 1e-5


def point_rows(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PointMass: x' = x + DT u stays in the box, |x_i'| <= EDGE, i.e. DT u <= EDGE - x and -DT u <= EDGE + x."""
    x = np.asarray(obs[: obs.size // 2], np.float64)
    eye = np.eye(x.size)
    return np.concatenate([DT * eye, -DT * eye]), np.concatenate([EDGE - x, EDGE + x])


def point_model(state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PointMass's step; margins EDGE - |x_i'| per coordinate."""
    d = state.size // 2
    x = np.asarray(state[:d], np.float64) + DT * np.asarray(action, np.float64)
    return np.concatenate([x, state[d:]]), EDGE - np.abs(x)


def planar_barriers(p: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The double integrator's invariant set per axis and wall: h = EDGE -+ p - (speed towards the wall)^2 / 2,
    the room left once a full brake (|a| = 1) has stopped it. Braking at full force raises h by DT^2 / 2 per step
    (the discrete brake stops sooner than the continuous one), so {h >= 0} is invariant. Order: x hi, x lo, y
    hi, y lo."""
    hi = EDGE - p - np.maximum(v, 0.0) ** 2 / 2
    lo = EDGE + p - np.maximum(-v, 0.0) ** 2 / 2
    return np.stack([hi, lo], axis=1).reshape(-1)


def planar_step(p: np.ndarray, v: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = v + DT * np.clip(a, -1.0, 1.0)
    return p + DT * v, v


def planar_model(state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PlanarDoubleIntegrator's step; margins: the four barriers of the next state."""
    p, v = planar_step(np.asarray(state[:2], np.float64), np.asarray(state[2:4], np.float64),
                       np.asarray(action, np.float64))
    return np.concatenate([p, v, state[4:]]), planar_barriers(p, v)


def planar_rows(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Affine rows for the double integrator: each barrier of the next state is concave in its axis' action, so
    its chord between a = -1 and a = +1 lies below it: chord >= 0 is a safe, affine condition, and it holds at
    full braking wherever the state is in the set."""
    p, v = np.asarray(obs[:2], np.float64), np.asarray(obs[2:4], np.float64)
    at_minus = planar_barriers(*planar_step(p, v, -np.ones(2)))
    at_plus = planar_barriers(*planar_step(p, v, np.ones(2)))
    slope = (at_plus - at_minus) / 2  # chord: h(a) ~ at_minus + (a + 1) slope  >= 0
    A = np.zeros((4, 2))
    A[np.arange(4), np.arange(4) // 2] = -slope
    return A, at_minus + slope


HALFSPACE_LEVEL = 0.5  # the halfspace n.x <= HALFSPACE_LEVEL, n the unit diagonal (bench/shield_any_env.py)


def point_halfspace_rows(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PointMass kept in one halfspace n.x <= HALFSPACE_LEVEL (n = (1, ..., 1) / sqrt(dim)): one row."""
    x = np.asarray(obs[: obs.size // 2], np.float64)
    n = np.full(x.size, 1.0 / np.sqrt(x.size))
    return DT * n[None, :], np.array([HALFSPACE_LEVEL - n @ x])


def point_halfspace_model(state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same halfspace as a model: PointMass's step, one margin."""
    d = state.size // 2
    x = np.asarray(state[:d], np.float64) + DT * np.asarray(action, np.float64)
    return np.concatenate([x, state[d:]]), np.array([HALFSPACE_LEVEL - x.sum() / np.sqrt(d)])
