"""Explicit TVD Runge-Kutta steps (Shu and Osher) and the CFL time step."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Rate = Callable[[np.ndarray], np.ndarray]


def cfl_step(speeds: np.ndarray, spacing: np.ndarray, cfl: float) -> float:
    """Largest stable step: cfl / max_x sum_i alpha_i(x) / dx_i."""
    if not 0 < cfl <= 1:
        raise ValueError(f"cfl: must be in (0, 1], got {cfl}")
    rate = float(np.max(np.sum(speeds / spacing, axis=-1)))
    return cfl / rate if rate > 0 else np.inf


def tvd_rk1(values: np.ndarray, rate: Rate, dt: float) -> np.ndarray:
    return values + dt * rate(values)


def tvd_rk2(values: np.ndarray, rate: Rate, dt: float) -> np.ndarray:
    stage = values + dt * rate(values)
    return 0.5 * (values + stage + dt * rate(stage))


def tvd_rk3(values: np.ndarray, rate: Rate, dt: float) -> np.ndarray:
    stage1 = values + dt * rate(values)
    stage2 = 0.75 * values + 0.25 * (stage1 + dt * rate(stage1))
    return values / 3.0 + 2.0 / 3.0 * (stage2 + dt * rate(stage2))


INTEGRATORS: dict[int, Callable[[np.ndarray, Rate, float], np.ndarray]] = {1: tvd_rk1, 2: tvd_rk2, 3: tvd_rk3}
