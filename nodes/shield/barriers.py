"""GridLife control barrier functions and their one-step affine constraints A a >= b.

Every barrier h_i(x) is >= 0 on the safe set. For a state x, `constraints` returns rows (A_i, b_i) in
the env action a in [-1, 1]^2 such that A_i a >= b_i implies h_i(x') >= (1 - gamma_i) h_i(x) under the
true GridLife dynamics (docs/gridlife.md): every row is a lower bound of h_i(x'), never an estimate.

Barriers (one row each, in this order):
- ``arena_{x,y}_{lo,hi}``: distance to each wall. The rows also keep p + dt*u inside the arena, so the
  clip in the position update is inactive and p' = p + dt*vmax*a exactly for the other rows.
- ``hazard_k``: |p - c_k| - r_k; row: the tangent half-plane n.(p' - c_k) - r_k (|x| >= n.x).
- ``energy``: E - E_min - c_E * min_j(|p - s_j| - rho_j) over refuel stations, rho_j = r_j - step_max
  (inside rho_j the next position is surely in the station, so the refuel is credited).
- ``temperature``: T_max - T - c_T * min_j(|p - s_j| - rho_j) - c_hot * sum_k l_k(p) over cool
  stations and hot zones, l_k = max(0, r_k + 2*step_max - |p - c_k|): the heat still to shed on the way
  out of a hot zone.
- ``integrity``: I - I_min - c_I * min_j(|p - s_j| - rho_j) over repair stations.

How the internal rows stay affine: the effort |a|^2/2 is bounded by its maximum 1; |p' - s| is bounded
by sqrt concavity, sqrt(X) <= m/2 + X/(2m) with X = |p - s|^2 + 2 dt vmax (p - s).a + 2 (dt vmax)^2;
max(0, g - dt vmax n.a) by its chord over the box. The costs per metre c_* exceed the worst-case rate
of loss per metre travelled towards the station (times `cost_slack`), so an agent on the boundary
h = 0 can always keep h >= 0 by heading for the station, unless an obstacle lies on the straight path
(then the QP may be infeasible and the shield degrades, see core.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from nodes.env.gridlife import GridLifeConfig, GridLifeLayout, build_layout

INTERNAL_BARRIERS: tuple[str, str, str] = ("energy", "temperature", "integrity")
ARENA_BARRIERS: tuple[str, str, str, str] = ("arena_x_lo", "arena_x_hi", "arena_y_lo", "arena_y_hi")


@dataclass(frozen=True)
class BarrierConfig:
    """Margins and decay rates of the barriers; internal thresholds are in the units of h = (E, T, I)."""

    gamma_position: float = 0.5  # CBF decay for arena and hazard barriers, in (0, 1]
    gamma_internal: float = 0.2  # CBF decay for energy, temperature and integrity, in (0, 1]
    energy_min: float = 0.05  # E kept above this (minus c_E * rho at a station's centre)
    temperature_max: float = 0.95
    integrity_min: float = 0.05
    cost_slack: float = 1.1  # c_* = cost_slack * worst-case loss per metre; >= 1 for invariance
    row_tightening: float = 1e-6  # added to every b so that solver tolerance cannot cross a bound
    uncertainty_scale: float = 2.0  # pessimistic internal state = estimate -/+ scale * std

    def __post_init__(self) -> None:
        for name in ("gamma_position", "gamma_internal"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 < value <= 1.0):
                raise ValueError(f"{name}: must lie in (0, 1], got {value!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{f.name}: expected a finite number, got {value!r}")
        for name in ("energy_min", "integrity_min"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}: must lie in [0, 1), got {getattr(self, name)!r}")
        if not 0.0 < self.temperature_max <= 1.0:
            raise ValueError(f"temperature_max: must lie in (0, 1], got {self.temperature_max!r}")
        if self.cost_slack < 1.0:
            raise ValueError(f"cost_slack: must be >= 1, got {self.cost_slack!r}")
        if self.row_tightening < 0.0 or self.uncertainty_scale < 0.0:
            raise ValueError("row_tightening/uncertainty_scale: must be >= 0")


@dataclass(frozen=True)
class BarrierRows:
    """Per-arena constraints A a >= b (A: (B, R, 2), b: (B, R)) and the barrier values h (B, R)."""

    A: np.ndarray
    b: np.ndarray
    values: np.ndarray


class GridLifeBarriers:
    """Barrier values and one-step affine constraints for a batch of GridLife states."""

    def __init__(
        self, env_cfg: GridLifeConfig, cfg: BarrierConfig | None = None, layout: GridLifeLayout | None = None
    ) -> None:
        self.env_cfg = env_cfg
        self.cfg = BarrierConfig() if cfg is None else cfg
        self.layout = build_layout(env_cfg) if layout is None else layout
        e, lay = env_cfg, self.layout
        self.step_len = e.dt * e.vmax  # dt*vmax: displacement per unit of action
        self.step_max = self.step_len * math.sqrt(2.0)  # longest step, |a| <= sqrt(2)
        self.stations = {kind: lay.stations(kind) for kind in INTERNAL_STATION}
        for kind, (_, radii) in self.stations.items():
            deep = radii - self.step_max
            if len(radii) == 0 or np.any(deep <= self.step_len):
                raise ValueError(
                    f"station_radius: {kind} stations need radius > {self.step_len + self.step_max:.3f} m "
                    "(one step plus one diagonal step) for the station barriers"
                )
        self.deep_radius = {kind: radii - self.step_max - 1e-9 for kind, (_, radii) in self.stations.items()}
        # approach efficiency: the sqrt bound loses at most step_len / rho of each step
        rho_min = min(float(r.min()) for r in self.deep_radius.values())
        efficiency = e.vmax * (1.0 - self.step_len / rho_min)
        slack = self.cfg.cost_slack
        self.cost_energy = slack * (e.k_basal + e.k_effort) / efficiency
        self.cost_temperature = slack * (e.eta_basal + e.eta_effort) / efficiency
        self.cost_integrity = slack * e.omega_wear / efficiency
        # inside a hot zone the way out must shed the extra heating even when it leads away from the station
        self.cost_hot = slack * (
            (e.eta_basal + e.eta_effort + e.eta_hot) / e.vmax + self.cost_temperature * (1.0 + self.step_len / rho_min)
        )
        self.hot_reach = lay.hot_radii + 2.0 * self.step_max  # R_k where l_k starts
        # every disc in one array so that one distance computation serves all barriers
        station_centres = [self.stations[k][0] for k in INTERNAL_STATION]
        self._centres = np.concatenate([lay.hazard_centres, *station_centres, lay.hot_centres]).reshape(-1, 2)
        sizes = [len(lay.hazard_radii), *(len(c) for c in station_centres), len(lay.hot_radii)]
        bounds = np.cumsum([0, *sizes])
        self._hazard_slice = slice(bounds[0], bounds[1])
        self._station_slice = {k: slice(bounds[i + 1], bounds[i + 2]) for i, k in enumerate(INTERNAL_STATION)}
        self._hot_slice = slice(bounds[4], bounds[5])
        n_haz = len(lay.hazard_radii)
        self.names: tuple[str, ...] = (*ARENA_BARRIERS, *(f"hazard_{k}" for k in range(n_haz)), *INTERNAL_BARRIERS)
        self.n_rows = len(self.names)
        self.n_position_rows = 4 + n_haz
        gp, gi = self.cfg.gamma_position, self.cfg.gamma_internal
        self.gamma = np.array([gp] * self.n_position_rows + [gi] * 3)

    # ------------------------------------------------------------------------------------------ values

    def pessimistic(self, internal: np.ndarray, std: np.ndarray | None) -> np.ndarray:
        """Worst case of an estimated internal state: E and I lowered, T raised by scale * std."""
        h = np.asarray(internal, dtype=np.float64)
        if std is None:
            return h
        k = self.cfg.uncertainty_scale * np.abs(np.asarray(std, dtype=np.float64))
        return np.clip(h + k * np.array([-1.0, 1.0, -1.0]), 0.0, 1.0)

    def values(self, pos: np.ndarray, internal: np.ndarray) -> np.ndarray:
        """Barrier values h (..., R), in the order of `names`; >= 0 on the safe set."""
        pos = np.asarray(pos, dtype=np.float64)
        return self._values(pos, np.asarray(internal, dtype=np.float64), self._geometry(pos)[1])

    def _geometry(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offsets p - c (..., M, 2) and distances (..., M) to every disc of the layout."""
        rel = pos[..., None, :] - self._centres
        return rel, np.sqrt(rel[..., 0] ** 2 + rel[..., 1] ** 2)

    def _values(self, pos: np.ndarray, h: np.ndarray, dist: np.ndarray) -> np.ndarray:
        L = self.env_cfg.arena_size
        hazard = dist[..., self._hazard_slice] - self.layout.hazard_radii
        hot = np.maximum(0.0, self.hot_reach - dist[..., self._hot_slice]).sum(axis=-1)
        gap = {k: (dist[..., self._station_slice[k]] - self.deep_radius[k]).min(axis=-1) for k in INTERNAL_STATION}
        shape = np.broadcast_shapes(pos.shape[:-1], h.shape[:-1])
        out = np.empty((*shape, self.n_rows))
        out[..., 0], out[..., 1] = pos[..., 0], L - pos[..., 0]
        out[..., 2], out[..., 3] = pos[..., 1], L - pos[..., 1]
        out[..., 4 : self.n_position_rows] = hazard
        c = self.cfg
        out[..., -3] = h[..., 0] - c.energy_min - self.cost_energy * gap["refuel"]
        out[..., -2] = c.temperature_max - h[..., 1] - self.cost_temperature * gap["cool"] - self.cost_hot * hot
        out[..., -1] = h[..., 2] - c.integrity_min - self.cost_integrity * gap["repair"]
        return out

    def cbf_slack(
        self, pos: np.ndarray, internal: np.ndarray, pos_next: np.ndarray, internal_next: np.ndarray
    ) -> np.ndarray:
        """h(x') - (1 - gamma) h(x) per barrier (..., R): >= 0 where the CBF condition holds."""
        return self.values(pos_next, internal_next) - (1.0 - self.gamma) * self.values(pos, internal)

    def _station_gap(self, pos: np.ndarray, kind: str) -> np.ndarray:
        centres, _ = self.stations[kind]
        return (_dist(pos, centres) - self.deep_radius[kind]).min(axis=-1)

    def station_gap(self, pos: np.ndarray, kind: str) -> np.ndarray:
        """min_j |p - s_j| - rho_j over the stations of one kind (<= 0: the next step is surely inside)."""
        return self._station_gap(np.asarray(pos, dtype=np.float64), kind)

    # ------------------------------------------------------------------------------------- constraints

    def constraints(self, pos: np.ndarray, internal: np.ndarray) -> BarrierRows:
        """Rows A a >= b for positions (B, 2) and internal states (B, 3) (already pessimistic)."""
        e, cfg, lay = self.env_cfg, self.cfg, self.layout
        pos = np.asarray(pos, dtype=np.float64).reshape(-1, 2)
        h = np.asarray(internal, dtype=np.float64).reshape(-1, 3)
        n = pos.shape[0]
        rel, dist = self._geometry(pos)
        values = self._values(pos, h, dist)
        s = self.step_len
        A = np.zeros((n, self.n_rows, 2))
        b = np.empty((n, self.n_rows))
        # arena: p + dt*u stays within [gamma-fraction of] each wall distance
        A[:, 0, 0], A[:, 1, 0], A[:, 2, 1], A[:, 3, 1] = s, -s, s, -s
        # hazards: tangent half-plane through the nearest point of the disc
        nh = len(lay.hazard_radii)
        if nh:
            A[:, 4 : 4 + nh] = s * _unit_from(rel[:, self._hazard_slice], dist[:, self._hazard_slice])
        b[:, : self.n_position_rows] = -cfg.gamma_position * values[:, : self.n_position_rows]
        # which disc effects are certain (stations) or possible (hot zones, hazards) at p'
        bounds = {k: self._station_bound(rel, dist, k) for k in INTERNAL_STATION}
        credit = {k: bounds[k][2] for k in INTERNAL_STATION}
        maybe_hot = np.any(dist[:, self._hot_slice] - lay.hot_radii <= self.step_max + 1e-9, axis=-1)
        # hazard damage is ruled out by the hazard rows, except when starting inside a hazard
        maybe_hazard = np.any((1.0 - cfg.gamma_position) * values[:, 4 : 4 + nh] < 0.0, axis=-1)
        dt = e.dt
        energy_next = np.minimum(1.0, h[:, 0] - dt * (e.k_basal + e.k_effort) + dt * e.rho_refuel * credit["refuel"])
        temp_next = np.maximum(
            0.0,
            h[:, 1] + dt * (e.eta_basal + e.eta_effort + e.eta_hot * maybe_hot) - dt * e.rho_cool * credit["cool"],
        )
        integ_next = np.minimum(
            1.0,
            h[:, 2] - dt * (e.omega_wear + e.delta_hazard * maybe_hazard) + dt * e.rho_repair * credit["repair"],
        )
        gi = cfg.gamma_internal
        ie, it, ii = self.n_position_rows, self.n_position_rows + 1, self.n_position_rows + 2
        # energy: -c_E |p'-s|_ub >= (1-g) h - (E'_lb - E_min) - c_E rho
        slope, offset, _ = bounds["refuel"]
        A[:, ie] = -self.cost_energy * slope
        b[:, ie] = (1 - gi) * values[:, ie] - (energy_next - cfg.energy_min) + self.cost_energy * offset
        # temperature: station term plus the chord bound of every hot-zone depth term
        slope, offset, _ = bounds["cool"]
        hot_slope, hot_offset = self._hot_depth_bound(rel[:, self._hot_slice], dist[:, self._hot_slice])
        A[:, it] = -self.cost_temperature * slope - self.cost_hot * hot_slope
        b[:, it] = (
            (1 - gi) * values[:, it]
            - (cfg.temperature_max - temp_next)
            + self.cost_temperature * offset
            + self.cost_hot * hot_offset
        )
        slope, offset, _ = bounds["repair"]
        A[:, ii] = -self.cost_integrity * slope
        b[:, ii] = (1 - gi) * values[:, ii] - (integ_next - cfg.integrity_min) + self.cost_integrity * offset
        b += cfg.row_tightening
        return BarrierRows(A=A, b=b, values=values)

    def _station_bound(self, rel: np.ndarray, dist: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """|p' - s_j| - rho_j <= slope . a + offset for the station j nearest in gap (the max-barrier),
        and whether p is deep inside a station of this kind (its effect at p' is certain)."""
        sl = self._station_slice[kind]
        deep = self.deep_radius[kind]
        gaps = dist[:, sl] - deep
        j = np.argmin(gaps, axis=-1)
        rows = np.arange(len(j))
        r = rel[rows, sl.start + j]
        d = dist[rows, sl.start + j]
        m = np.maximum(d, self.step_len)  # expansion point of the sqrt bound, away from 0
        slope = self.step_len * r / m[:, None]
        offset = 0.5 * m + (d * d + 2.0 * self.step_len**2) / (2.0 * m) - deep[j]
        return slope, offset, gaps[rows, j] <= 0.0

    def _hot_depth_bound(self, rel: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """sum_k l_k(p') <= slope . a + offset via the chord of max(0, g - dt vmax t) over t = n.a."""
        if rel.shape[1] == 0:
            return np.zeros((rel.shape[0], 2)), np.zeros(rel.shape[0])
        n = _unit_from(rel, dist)
        g = self.hot_reach - dist
        t_max = np.abs(n).sum(axis=-1)  # max of n.a over the box
        y_low = np.maximum(0.0, g + self.step_len * t_max)  # at t = -t_max
        y_high = np.maximum(0.0, g - self.step_len * t_max)  # at t = +t_max
        chord_slope = (y_high - y_low) / (2.0 * t_max)
        slope = (chord_slope[..., None] * n).sum(axis=1)
        offset = (0.5 * (y_low + y_high)).sum(axis=1)
        return slope, offset


INTERNAL_STATION: tuple[str, str, str] = ("refuel", "cool", "repair")


def _dist(pos: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """|p - c_k| for (..., 2) positions and (M, 2) centres: (..., M)."""
    return np.linalg.norm(np.asarray(pos)[..., None, :] - centres, axis=-1)


def _unit_from(v: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """v / |v| given |v|, with the x axis where |v| is zero (any unit vector gives a valid tangent bound)."""
    tiny = norm <= 1e-12
    out = v / np.where(tiny, 1.0, norm)[..., None]
    if tiny.any():
        out[tiny] = (1.0, 0.0)
    return out
