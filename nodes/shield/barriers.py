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
from dataclasses import dataclass

import numba
import numpy as np

from nodes.config_fields import check_at_least, check_open_unit, check_types
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
        check_types(self)
        check_open_unit(self, ("gamma_position", "gamma_internal", "temperature_max"), closed_high=True)
        check_open_unit(self, ("energy_min", "integrity_min"), closed_low=True)
        check_at_least(self, ("cost_slack",), 1.0)
        check_at_least(self, ("row_tightening", "uncertainty_scale"), 0.0)


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
        n_haz = len(lay.hazard_radii)
        self.names: tuple[str, ...] = (*ARENA_BARRIERS, *(f"hazard_{k}" for k in range(n_haz)), *INTERNAL_BARRIERS)
        self.n_rows = len(self.names)
        self.n_position_rows = 4 + n_haz
        gp, gi = self.cfg.gamma_position, self.cfg.gamma_internal
        self.gamma = np.array([gp] * self.n_position_rows + [gi] * 3)
        # every disc in one table (hazards, refuel, cool, repair stations, hot zones) with its radius, the
        # radius the barrier uses (deep radius for stations, reach for hot zones) and its group
        groups = [(lay.hazard_centres, lay.hazard_radii, lay.hazard_radii)]
        groups += [(self.stations[k][0], self.stations[k][1], self.deep_radius[k]) for k in INTERNAL_STATION]
        groups += [(lay.hot_centres, lay.hot_radii, self.hot_reach)]
        centres = np.concatenate([np.asarray(c, dtype=np.float64).reshape(-1, 2) for c, _, _ in groups])
        radii = np.concatenate([r for _, r, _ in groups]).astype(np.float64)
        reach = np.concatenate([r for _, _, r in groups]).astype(np.float64)
        bounds = np.cumsum([0, *(len(r) for _, r, _ in groups)]).astype(np.int64)
        c = self.cfg
        params = np.array(
            [e.arena_size, self.step_len, self.step_max, gp, gi, c.energy_min, c.temperature_max, c.integrity_min,
             self.cost_energy, self.cost_temperature, self.cost_integrity, self.cost_hot, c.row_tightening, e.dt,
             e.k_basal + e.k_effort, e.rho_refuel, e.eta_basal + e.eta_effort, e.eta_hot, e.rho_cool, e.omega_wear,
             e.delta_hazard, e.rho_repair],
            dtype=np.float64,
        )  # fmt: skip
        self.kernel_tables = (params, np.ascontiguousarray(centres), radii, reach, bounds)

    # ------------------------------------------------------------------------------------------ values

    def pessimistic(self, internal: np.ndarray, std: np.ndarray | None) -> np.ndarray:
        """Worst case of an estimated internal state: E and I lowered, T raised by scale * std."""
        h = np.asarray(internal, dtype=np.float64)
        if std is None:
            return h
        return worst_corner(h, self.cfg.uncertainty_scale * np.asarray(std, dtype=np.float64))

    def values(self, pos: np.ndarray, internal: np.ndarray) -> np.ndarray:
        """Barrier values h (..., R), in the order of `names`; >= 0 on the safe set."""
        pos = np.asarray(pos, dtype=np.float64)
        h = np.asarray(internal, dtype=np.float64)
        shape = np.broadcast_shapes(pos.shape[:-1], h.shape[:-1])
        p = np.ascontiguousarray(np.broadcast_to(pos, (*shape, 2))).reshape(-1, 2)
        q = np.ascontiguousarray(np.broadcast_to(h, (*shape, 3))).reshape(-1, 3)
        out = np.empty((p.shape[0], self.n_rows))
        _values_batch(p, q, out, *self.kernel_tables)
        return out.reshape(*shape, self.n_rows)

    # ------------------------------------------------------------------------------------- constraints

    def constraints(self, pos: np.ndarray, internal: np.ndarray) -> BarrierRows:
        """Rows A a >= b for positions (B, 2) and internal states (B, 3) (already pessimistic)."""
        p = np.ascontiguousarray(pos, dtype=np.float64).reshape(-1, 2)
        h = np.ascontiguousarray(internal, dtype=np.float64).reshape(-1, 3)
        n = p.shape[0]
        A = np.zeros((n, self.n_rows, 2))
        b = np.empty((n, self.n_rows))
        values = np.empty((n, self.n_rows))
        rows_batch(p, h, A, b, values, *self.kernel_tables)
        return BarrierRows(A=A, b=b, values=values)


INTERNAL_STATION: tuple[str, str, str] = ("refuel", "cool", "repair")
# The direction in which each internal variable makes every barrier row worse: less energy, more heat, less
# integrity. Each internal row (and the env's next value of its variable) depends on its own variable alone and
# monotonically, so the worst corner of a box is the same point for every row, and a row certified there holds
# for every internal state in the box; the position rows do not depend on the internal state at all.
WORST_DIRECTION = np.array([-1.0, 1.0, -1.0])


def worst_corner(mean: np.ndarray, half_width: np.ndarray) -> np.ndarray:
    """The corner of the box mean +- half_width (B, 3) that is worst for every barrier, clipped into [0, 1]
    (an infinite half-width gives the worst of the whole range: no knowledge of that variable)."""
    h = np.asarray(mean, dtype=np.float64) + WORST_DIRECTION * np.abs(np.asarray(half_width, dtype=np.float64))
    return np.clip(h, 0.0, 1.0)


def belief_corner(mean: np.ndarray, std: np.ndarray, k: float, calibrated: bool) -> np.ndarray:
    """The internal state a shield certifies for a belief: the worst corner of mean +- k * std, or, for a belief
    not (yet) calibrated, of the whole range of every variable (no knowledge)."""
    mean = np.asarray(mean, dtype=np.float64)
    half_width = k * np.asarray(std, dtype=np.float64) if calibrated else np.full(mean.shape, np.inf)
    return worst_corner(mean, half_width)


def drifted_corner(mean: np.ndarray, half_width: np.ndarray, gap: int, drift: np.ndarray, episode_step: np.ndarray,
                   start_corner: np.ndarray) -> np.ndarray:
    """The worst corner now of a box mean +- half_width (B, 3) that held the truth `gap` steps ago, each variable
    able to worsen by at most `drift` (3,) per step; an arena whose episode started since (episode_step < gap)
    is a start state (worst corner `start_corner`) worsened for episode_step steps."""
    corner = worst_corner(mean, np.abs(half_width) + gap * np.asarray(drift))
    restarted = np.asarray(episode_step) < gap
    since = np.asarray(episode_step)[restarted, None].astype(np.float64)
    corner[restarted] = worst_corner(np.tile(start_corner, (int(restarted.sum()), 1)), since * np.asarray(drift))
    return corner


# -------------------------------------------------------------------------------------------- kernels
# Compiled with numba: the shield evaluates these per decision, often for one arena, where numpy's
# per-call overhead would dominate. Arena by arena, with the disc table built in GridLifeBarriers.

(K_L, K_STEP, K_STEP_MAX, K_GP, K_GI, K_E_MIN, K_T_MAX, K_I_MIN, K_COST_E, K_COST_T, K_COST_I, K_COST_HOT, K_TIGHT,
 K_DT, K_E_RATE, K_RHO_E, K_T_RATE, K_ETA_HOT, K_RHO_C, K_WEAR, K_DAMAGE, K_RHO_R) = range(22)  # fmt: skip
HAZARD, REFUEL, COOL, REPAIR, HOT = range(5)  # disc groups, in table order


@numba.njit(cache=True)
def _nearest_station(px, py, centres, reach, bounds, group):  # type: ignore[no-untyped-def]
    """(index, gap) of the station of a group with the smallest |p - s_j| - rho_j (the first on ties)."""
    best, gap = -1, np.inf
    for k in range(bounds[group], bounds[group + 1]):
        g = math.sqrt((px - centres[k, 0]) ** 2 + (py - centres[k, 1]) ** 2) - reach[k]
        if g < gap:
            best, gap = k, g
    return best, gap


@numba.njit(cache=True)
def _values_one(px, py, e, t, i, out, P, centres, radii, reach, bounds):  # type: ignore[no-untyped-def]
    """Barrier values of one state into out (R,), in the order of GridLifeBarriers.names."""
    out[0], out[1], out[2], out[3] = px, P[K_L] - px, py, P[K_L] - py
    for k in range(bounds[HAZARD], bounds[HAZARD + 1]):
        out[4 + k] = math.sqrt((px - centres[k, 0]) ** 2 + (py - centres[k, 1]) ** 2) - radii[k]
    hot = 0.0
    for k in range(bounds[HOT], bounds[HOT + 1]):
        hot += max(0.0, reach[k] - math.sqrt((px - centres[k, 0]) ** 2 + (py - centres[k, 1]) ** 2))
    r = out.shape[0]
    out[r - 3] = e - P[K_E_MIN] - P[K_COST_E] * _nearest_station(px, py, centres, reach, bounds, REFUEL)[1]
    out[r - 2] = (P[K_T_MAX] - t - P[K_COST_T] * _nearest_station(px, py, centres, reach, bounds, COOL)[1]
                  - P[K_COST_HOT] * hot)  # fmt: skip
    out[r - 1] = i - P[K_I_MIN] - P[K_COST_I] * _nearest_station(px, py, centres, reach, bounds, REPAIR)[1]


@numba.njit(cache=True)
def _values_batch(pos, h, out, P, centres, radii, reach, bounds):  # type: ignore[no-untyped-def]
    for n in range(pos.shape[0]):
        _values_one(pos[n, 0], pos[n, 1], h[n, 0], h[n, 1], h[n, 2], out[n], P, centres, radii, reach, bounds)


@numba.njit(cache=True)
def _unit(dx, dy):  # type: ignore[no-untyped-def]
    """(dx, dy) / |(dx, dy)|, the x axis at zero length (any unit vector gives a valid tangent bound)."""
    d = math.sqrt(dx * dx + dy * dy)
    if d <= 1e-12:
        return 1.0, 0.0
    return dx / d, dy / d


@numba.njit(cache=True)
def _station_bound(px, py, P, centres, reach, bounds, group):  # type: ignore[no-untyped-def]
    """|p' - s_j| - rho_j <= slope . a + offset for the nearest-in-gap station j (the sqrt concavity
    bound expanded at m = max(|p - s_j|, step)); and whether p is deep inside it (its effect is certain)."""
    j, gap = _nearest_station(px, py, centres, reach, bounds, group)
    s = P[K_STEP]
    rx, ry = px - centres[j, 0], py - centres[j, 1]
    d = math.sqrt(rx * rx + ry * ry)
    m = max(d, s)
    offset = 0.5 * m + (d * d + 2.0 * s * s) / (2.0 * m) - reach[j]
    return s * rx / m, s * ry / m, offset, gap <= 0.0


@numba.njit(cache=True)
def rows_batch(pos, h, A, b, values, P, centres, radii, reach, bounds):  # type: ignore[no-untyped-def]
    """Rows A a >= b (A zero on entry) and the values, per arena; see the module docstring for each row."""
    s, gp, gi, dt = P[K_STEP], P[K_GP], P[K_GI], P[K_DT]
    n_pos = 4 + bounds[HAZARD + 1]
    ie, it, ii = n_pos, n_pos + 1, n_pos + 2
    for n in range(pos.shape[0]):
        px, py = pos[n, 0], pos[n, 1]
        v = values[n]
        _values_one(px, py, h[n, 0], h[n, 1], h[n, 2], v, P, centres, radii, reach, bounds)
        # arena walls: p + dt*u stays within the gamma-fraction of each wall distance
        A[n, 0, 0], A[n, 1, 0], A[n, 2, 1], A[n, 3, 1] = s, -s, s, -s
        # hazards: the tangent half-plane through the nearest point of the disc
        maybe_hazard = False
        for k in range(bounds[HAZARD], bounds[HAZARD + 1]):
            ux, uy = _unit(px - centres[k, 0], py - centres[k, 1])
            A[n, 4 + k, 0], A[n, 4 + k, 1] = s * ux, s * uy
            # hazard damage is ruled out by the hazard rows, except when starting inside a hazard
            maybe_hazard = maybe_hazard or (1.0 - gp) * v[4 + k] < 0.0
        for r in range(n_pos):
            b[n, r] = -gp * v[r]
        # hot zones: possible heating at p', and the chord bound of every depth term max(0, g - step n.a)
        maybe_hot = False
        hot_sx, hot_sy, hot_offset = 0.0, 0.0, 0.0
        for k in range(bounds[HOT], bounds[HOT + 1]):
            dx, dy = px - centres[k, 0], py - centres[k, 1]
            d = math.sqrt(dx * dx + dy * dy)
            maybe_hot = maybe_hot or d - radii[k] <= P[K_STEP_MAX] + 1e-9
            ux, uy = _unit(dx, dy)
            g = reach[k] - d
            t_max = abs(ux) + abs(uy)  # max of u.a over the box
            y_low = max(0.0, g + s * t_max)
            y_high = max(0.0, g - s * t_max)
            chord = (y_high - y_low) / (2.0 * t_max)
            hot_sx += chord * ux
            hot_sy += chord * uy
            hot_offset += 0.5 * (y_low + y_high)
        e_sx, e_sy, e_off, e_in = _station_bound(px, py, P, centres, reach, bounds, REFUEL)
        c_sx, c_sy, c_off, c_in = _station_bound(px, py, P, centres, reach, bounds, COOL)
        r_sx, r_sy, r_off, r_in = _station_bound(px, py, P, centres, reach, bounds, REPAIR)
        # lower bounds of E', I' and upper bound of T' with the effort at its maximum
        energy_next = min(1.0, h[n, 0] - dt * P[K_E_RATE] + dt * P[K_RHO_E] * e_in)
        temp_next = max(0.0, h[n, 1] + dt * (P[K_T_RATE] + P[K_ETA_HOT] * maybe_hot) - dt * P[K_RHO_C] * c_in)
        integ_next = min(1.0, h[n, 2] - dt * (P[K_WEAR] + P[K_DAMAGE] * maybe_hazard) + dt * P[K_RHO_R] * r_in)
        # energy: -c_E |p'-s|_ub >= (1-g) h - (E'_lb - E_min) - c_E rho
        A[n, ie, 0], A[n, ie, 1] = -P[K_COST_E] * e_sx, -P[K_COST_E] * e_sy
        b[n, ie] = (1 - gi) * v[ie] - (energy_next - P[K_E_MIN]) + P[K_COST_E] * e_off
        A[n, it, 0] = -P[K_COST_T] * c_sx - P[K_COST_HOT] * hot_sx
        A[n, it, 1] = -P[K_COST_T] * c_sy - P[K_COST_HOT] * hot_sy
        b[n, it] = ((1 - gi) * v[it] - (P[K_T_MAX] - temp_next) + P[K_COST_T] * c_off
                    + P[K_COST_HOT] * hot_offset)  # fmt: skip
        A[n, ii, 0], A[n, ii, 1] = -P[K_COST_I] * r_sx, -P[K_COST_I] * r_sy
        b[n, ii] = (1 - gi) * v[ii] - (integ_next - P[K_I_MIN]) + P[K_COST_I] * r_off
        for r in range(b.shape[1]):
            b[n, r] += P[K_TIGHT]
