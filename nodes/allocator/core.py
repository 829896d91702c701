"""Station shares from the bodies' requests, by one documented rule (docs/allocator.md).

    allocator = Allocator(AllocatorConfig(), num_agents)
    demand, margin = requests(batch.internal, station, batch.layout.station_kinds, cfg.world)
    grants = allocator.allocate(station, demand, margin, n_stations)      # (N, A), each station's sum <= 1
    batch.step(actions, shares=grants)
    allocator.jain_index()

Rule, per station: every body in it demands d_i in [0, 1] (the fraction of the station's full rate it can use
this step) and has a margin m_i (its smallest internal viability margin). If the demands fit (sum <= 1) each
body gets its demand. Otherwise the rate is water-filled with weights w_i = d_i / max(m_i, margin_floor):
proportional to need, scaled up for the bodies closest to their limits, and never more than a body's demand
(what a saturated body does not use goes to the others, in the same proportions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nodes.env.gridlife import GridLifeConfig
from nodes.env.multi_gridlife import NO_STATION


@dataclass(frozen=True)
class AllocatorConfig:
    margin_floor: float = 0.05  # margins below this weigh as this (a dead body's margin is <= 0)

    def __post_init__(self) -> None:
        if isinstance(self.margin_floor, bool) or not isinstance(self.margin_floor, int | float) \
                or not math.isfinite(self.margin_floor) or self.margin_floor <= 0:  # fmt: skip
            raise ValueError(f"margin_floor: must be a finite number > 0, got {self.margin_floor!r}")


def requests(internal: np.ndarray, station: np.ndarray, station_kinds: np.ndarray,
             world: GridLifeConfig) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Demand (N, A) and margin (N, A) of each body from its internal state (N, A, 3) and the station it is in
    (N, A; -1 for none). A refuel station can give dt*rho_refuel a step and E stops at 1, so the demand there is
    min(1, (1 - E) / (dt*rho_refuel)); likewise T / (dt*rho_cool) and (1 - I) / (dt*rho_repair)."""
    h = np.asarray(internal, dtype=np.float64)
    deficit = np.stack([1.0 - h[..., 0], h[..., 1], 1.0 - h[..., 2]], axis=-1)
    per_step = world.dt * np.array([world.rho_refuel, world.rho_cool, world.rho_repair])
    kind = np.where(station >= 0, np.asarray(station_kinds)[np.maximum(station, 0)], 0)
    demand = np.take_along_axis(deficit / per_step, kind[..., None], axis=-1)[..., 0]
    demand = np.where(station >= 0, np.clip(demand, 0.0, 1.0), 0.0)
    margin = np.min(np.stack([h[..., 0], 1.0 - h[..., 1], h[..., 2]], axis=-1), axis=-1)
    return demand, margin


def water_fill(demand: np.ndarray, weight: np.ndarray, capacity: float = 1.0) -> np.ndarray:
    """Grants g <= demand with sum(g) <= capacity, proportional to weight among the bodies not yet saturated."""
    grant = np.zeros_like(demand)
    open_ = (demand > 0) & (weight > 0)
    remaining = capacity
    while open_.any() and remaining > 1e-15:
        tentative = remaining * np.where(open_, weight, 0.0) / weight[open_].sum()
        full = open_ & (grant + tentative >= demand)
        if not full.any():
            return grant + tentative
        remaining -= float((demand[full] - grant[full]).sum())
        grant[full] = demand[full]
        open_ &= ~full
    return grant


def jain_index(values: np.ndarray) -> float:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 when all are equal, 1/n when one gets everything; 1 for
    no values or all zero (nothing was unfair)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    square = float((x * x).sum())
    return 1.0 if x.size == 0 or square == 0.0 else float(x.sum() ** 2 / (x.size * square))


class Allocator:
    """Grants for the stations of N arenas of `num_agents` bodies; keeps each body's granted and demanded
    totals, whose ratio (the body's satisfaction) is what `jain_index` judges."""

    def __init__(self, cfg: AllocatorConfig, num_agents: int) -> None:
        if isinstance(num_agents, bool) or not isinstance(num_agents, int) or num_agents < 1:
            raise ValueError(f"num_agents: must be an integer >= 1, got {num_agents!r}")
        self.cfg, self.num_agents = cfg, num_agents
        self.granted = np.zeros(num_agents)
        self.demanded = np.zeros(num_agents)
        self.decisions = 0

    def allocate(self, station: np.ndarray, demand: np.ndarray, margin: np.ndarray, n_stations: int) -> np.ndarray:
        station, demand, margin = self._checked(station, demand, margin, n_stations)
        grants = np.zeros(demand.shape)
        weight = demand / np.maximum(margin, self.cfg.margin_floor)
        for i, k in sorted({(int(i), int(station[i, j])) for i, j in np.argwhere(station >= 0)}):
            members = np.flatnonzero(station[i] == k)
            d = demand[i, members]
            grants[i, members] = d if d.sum() <= 1.0 else water_fill(d, weight[i, members])
        self.granted += grants.sum(axis=0)
        self.demanded += demand.sum(axis=0)
        self.decisions += 1
        return grants

    def jain_index(self) -> float:
        """Over the bodies that asked for anything: each one's granted / demanded so far."""
        asked = self.demanded > 0
        return jain_index(self.granted[asked] / self.demanded[asked])

    def _checked(self, station, demand, margin, n_stations):  # type: ignore[no-untyped-def]
        station = np.asarray(station)
        if station.ndim != 2 or station.shape[1] != self.num_agents or station.dtype.kind not in "iu":
            raise ValueError(f"station: expected integer shape (N, {self.num_agents}), got {station.dtype} "
                             f"{station.shape}")  # fmt: skip
        if ((station < NO_STATION) | (station >= n_stations)).any():
            i, j = (int(x) for x in np.argwhere((station < NO_STATION) | (station >= n_stations))[0])
            raise ValueError(f"station: arena {i}, agent {j}: {int(station[i, j])} is no station (0..{n_stations - 1})")
        out = []
        for name, value in (("demand", demand), ("margin", margin)):
            v = np.asarray(value, dtype=np.float64)
            if v.shape != station.shape:
                raise ValueError(f"{name}: expected shape {station.shape}, got {v.shape}")
            bad = ~np.isfinite(v) if name == "margin" else ~(np.isfinite(v) & (v >= 0) & (v <= 1))
            if bad.any():
                i, j = (int(x) for x in np.argwhere(bad)[0])
                reason = "is not finite" if name == "margin" else "is not a number in [0, 1]"
                raise ValueError(f"{name}: arena {i}, agent {j}: {v[i, j]} {reason}")
            out.append(v)
        return station, out[0], out[1]


class GrantBook:
    """The env's side of the allocator: grants count only for the step they were computed for (a body may have
    moved to another station since), and a step without them gets equal shares (`shares` returns None),
    counted in `fallback_steps`."""

    def __init__(self) -> None:
        self._step: int | None = None
        self._grants: np.ndarray | None = None
        self.fallback_steps = 0

    def put(self, step: int, grants: np.ndarray) -> None:
        self._step, self._grants = int(step), np.asarray(grants, dtype=np.float64)

    def has(self, step: int) -> bool:
        return self._grants is not None and self._step == step

    def shares(self, step: int) -> np.ndarray | None:
        if self._grants is not None and self._step == step:
            return self._grants
        self.fallback_steps += 1
        return None
