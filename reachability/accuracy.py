"""Solver settings: which spatial derivative, which Runge-Kutta order, which CFL number."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PdeSettings:
    derivative: str  # key of derivatives.SCHEMES
    rk_order: int  # 1, 2 or 3 (TVD Runge-Kutta)
    cfl: float


ACCURACY: dict[str, PdeSettings] = {
    "low": PdeSettings(derivative="upwind_first", rk_order=1, cfl=0.9),
    "medium": PdeSettings(derivative="eno2", rk_order=2, cfl=0.75),
    "high": PdeSettings(derivative="weno5", rk_order=3, cfl=0.75),
}
