"""Declared conservative fallback policies for degraded mode.

- ``seek_station``: head at `speed` for the nearest station of the most-needed kind (the internal
  barrier with the smallest value: energy -> refuel, temperature -> cool, integrity -> repair; an arena keeps
  its target until that variable is restored inside the station, so two needs cannot make it dither), steering
  around hazards and hot zones that lie on the straight path, and hold still once deep inside it. The
  heading goes through the same barrier QP; if that is infeasible, through the position rows plus
  keep-out rows for the hot zones (the internal rows are dropped, so the fallback must not walk through
  heat); if even that fails, the action is 0.
- ``stop``: a = 0.
"""

from __future__ import annotations

import math
from typing import Literal

import numba
import numpy as np

from nodes.shield.barriers import INTERNAL_STATION, BarrierRows, GridLifeBarriers
from nodes.shield.qp import BarrierQP, row_slack

FallbackPolicy = Literal["seek_station", "stop"]
FALLBACK_POLICIES: tuple[str, str] = ("seek_station", "stop")
RESTORED: tuple[float, float, float] = (0.9, 0.2, 0.9)  # E >=, T <=, I >= : a station visit is complete


class Fallback:
    def __init__(self, barriers: GridLifeBarriers, qp: BarrierQP, policy: FallbackPolicy, speed: float) -> None:
        if policy not in FALLBACK_POLICIES:
            raise ValueError(f"fallback: must be one of {FALLBACK_POLICIES}, got {policy!r}")
        if not 0.0 < speed <= 1.0:
            raise ValueError(f"fallback_speed: must lie in (0, 1], got {speed!r}")
        self.barriers = barriers
        self.qp = qp
        self.policy = policy
        self.speed = float(speed)  # floats whatever the config holds, so that the kernels' signatures never change
        lay = barriers.layout
        # discs to steer around: hazards with a clearance, hot zones with their heat band
        self.obstacles = np.ascontiguousarray(np.concatenate([lay.hazard_centres, lay.hot_centres]).reshape(-1, 2))
        self.obstacle_radii = np.concatenate([lay.hazard_radii + 0.3, barriers.hot_reach]).astype(np.float64)
        self.keep_out_qp = BarrierQP(barriers.n_position_rows + len(lay.hot_radii), qp.cfg)
        # the keep-out kernel's tables and settings, as float64 whatever the layout and config hold
        self._hot_centres = np.ascontiguousarray(lay.hot_centres, dtype=np.float64).reshape(-1, 2)
        self._hot_radii = np.ascontiguousarray(lay.hot_radii, dtype=np.float64)
        self._step_len = float(barriers.step_len)
        self._keep_out_settings = (self._step_len, float(barriers.cfg.gamma_position),
                                   float(barriers.cfg.row_tightening))
        self._target: dict[int, int] = {}  # arena -> station kind being sought (index into INTERNAL_STATION)
        # stations of every kind in one table (centres, deep radii, kind index) for the compiled heading
        per_kind = [(barriers.stations[k][0], barriers.deep_radius[k]) for k in INTERNAL_STATION]
        self._stations = (np.ascontiguousarray(np.concatenate([c for c, _ in per_kind]), dtype=np.float64),
                          np.concatenate([r for _, r in per_kind]).astype(np.float64),
                          np.concatenate([np.full(len(r), k) for k, (_, r) in enumerate(per_kind)]).astype(np.int64))
        self._deep_discs = [[(float(x), float(y), float(r)) for (x, y), r in zip(c, rad, strict=True)]
                            for c, rad in per_kind]  # fmt: skip

    def _needs(self, values: np.ndarray, pos: np.ndarray, internal: np.ndarray, arenas: np.ndarray) -> np.ndarray:
        """Station kind per arena: the remembered target, or the kind of the smallest internal barrier (`values`:
        the energy, temperature and integrity barriers' values, (B, 3))."""
        need = np.argmin(values, axis=1)
        for row, arena in enumerate(arenas.tolist()):
            kind = self._target.get(arena)
            if kind is not None and not self._restored(pos[row].tolist(), internal[row].tolist(), kind):
                need[row] = kind
            self._target[arena] = int(need[row])
        return need

    def _restored(self, p: list[float], h: list[float], kind: int) -> bool:
        """Deep inside a station of that kind with the variable back near its best value."""
        level = (h[0] >= RESTORED[0], h[1] <= RESTORED[1], h[2] >= RESTORED[2])[kind]
        return level and any(math.hypot(p[0] - x, p[1] - y) <= r for x, y, r in self._deep_discs[kind])

    def heading(self, pos: np.ndarray, internal: np.ndarray, arenas: np.ndarray,
                rows: BarrierRows | None = None) -> np.ndarray:
        """The unfiltered seek_station action (B, 2) for the given arena indices (`rows`: the barrier rows at these
        states, if at hand, for their values)."""
        values = (self.barriers.values(pos, internal) if rows is None else rows.values)[:, -3:]
        need = self._needs(values, pos, internal, arenas)  # 0 energy, 1 temperature, 2 integrity
        centres, deep, kinds = self._stations
        return _seek_batch(np.ascontiguousarray(pos, dtype=np.float64), need, centres, deep, kinds, self.obstacles,
                           self.obstacle_radii, self.speed, self._step_len)  # fmt: skip

    def act(
        self, pos: np.ndarray, internal: np.ndarray, arenas: np.ndarray, infeasible: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Actions (B, 2) float32 for the arenas with these indices, and the barrier row slack (B, R) there.

        `infeasible` (B,) marks arenas whose barrier rows are already known to admit no action: they go
        straight to the keep-out rows."""
        pos = np.asarray(pos, dtype=np.float64)
        internal = np.asarray(internal, dtype=np.float64)
        rows = self.barriers.constraints(pos, internal)
        if self.policy == "stop":
            actions = np.zeros((len(pos), 2), dtype=np.float32)
            return actions, -rows.b
        target = self.heading(pos, internal, np.asarray(arenas), rows)
        actions = np.zeros((len(pos), 2), dtype=np.float32)
        slack = -rows.b
        feasible = np.zeros(len(pos), dtype=bool)
        try_rows = np.ones(len(pos), dtype=bool) if infeasible is None else ~np.asarray(infeasible, dtype=bool)
        if try_rows.any():
            res = self.qp.solve(rows.A[try_rows], rows.b[try_rows], target[try_rows])
            actions[try_rows], slack[try_rows], feasible[try_rows] = res.actions, res.slack, res.feasible
        rest = np.flatnonzero(~feasible)
        if rest.size:  # the internal rows cannot all hold: position rows and hot-zone keep-out rows
            A_rest, b_rest = rows.A[rest], rows.b[rest]
            A, b = self._keep_out_rows(pos[rest], A_rest, b_rest)
            sub = self.keep_out_qp.solve(A, b, target[rest])
            actions[rest] = np.where(sub.feasible[:, None], sub.actions, 0.0)
            slack[rest] = row_slack(A_rest, b_rest, actions[rest])
        return actions.astype(np.float32), slack

    def _keep_out_rows(self, pos: np.ndarray, A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position rows of the barriers plus a tangent half-plane per hot zone (decay gamma_position), for rows
        A (B, R, 2), b (B, R) from `GridLifeBarriers.constraints`."""
        return _keep_out_rows(np.ascontiguousarray(pos, dtype=np.float64), A, b, self.barriers.n_position_rows,
                              self._hot_centres, self._hot_radii, *self._keep_out_settings)


def fallback_margins(slack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The margin of each fallback action (its smallest finite row slack; inf if none is finite) and that row,
    for the row slack (B, R) `Fallback.act` returns."""
    finite = np.where(np.isfinite(slack), slack, np.inf)
    return finite.min(axis=1), np.argmin(finite, axis=1)


@numba.njit(cache=True)
def _keep_out_rows(pos, A, b, n_position, hot_centres, hot_radii, step_len, gamma, tightening):  # type: ignore[no-untyped-def]
    """Rows (B, P + H, 2) and (B, P + H): the first P (position) rows of A, b, then per hot zone the half-plane
    step_len * n.a >= -gamma * (|p - c| - r) + tightening, n the unit normal from the zone's centre."""
    n, hot = pos.shape[0], hot_radii.shape[0]
    A_out = np.empty((n, n_position + hot, 2))
    b_out = np.empty((n, n_position + hot))
    for k in range(n):
        for r in range(n_position):
            A_out[k, r, 0], A_out[k, r, 1], b_out[k, r] = A[k, r, 0], A[k, r, 1], b[k, r]
        for z in range(hot):
            dx, dy = pos[k, 0] - hot_centres[z, 0], pos[k, 1] - hot_centres[z, 1]
            dist = math.sqrt(dx * dx + dy * dy)
            scale = max(dist, 1e-9)
            A_out[k, n_position + z, 0] = step_len * (dx / scale)
            A_out[k, n_position + z, 1] = step_len * (dy / scale)
            b_out[k, n_position + z] = -gamma * (dist - hot_radii[z]) + tightening
    return A_out, b_out


@numba.njit(cache=True)
def _steer(px, py, gx, gy, obstacles, radii):  # type: ignore[no-untyped-def]
    """Unit heading from p to the goal, turned to the tangent of the first obstacle disc on the straight path."""
    tx, ty = gx - px, gy - py
    length = math.sqrt(tx * tx + ty * ty)
    if length < 1e-9:
        return 0.0, 0.0
    dx, dy = tx / length, ty / length
    first, first_along = -1, np.inf
    for k in range(radii.shape[0]):
        cx, cy = obstacles[k, 0] - px, obstacles[k, 1] - py
        along = cx * dx + cy * dy
        if 0.0 < along < length and abs(cx * dy - cy * dx) < radii[k] and along < first_along:
            first, first_along = k, along
    if first < 0:
        return dx, dy
    cx, cy, r = obstacles[first, 0] - px, obstacles[first, 1] - py, radii[first]
    dc = math.sqrt(cx * cx + cy * cy)
    side = 1.0 if cx * ty - cy * tx >= 0 else -1.0  # pass on the goal's side
    if dc <= r:  # inside the inflated disc: slide along it, away from the centre
        ox = -cy * -side / max(dc, 1e-9) - cx / max(dc, 1e-9)
        oy = cx * -side / max(dc, 1e-9) - cy / max(dc, 1e-9)
        norm = math.sqrt(ox * ox + oy * oy)
        return ox / norm, oy / norm
    angle = math.asin(min(1.0, r / dc)) * -side
    cos, sin = math.cos(angle), math.sin(angle)
    ux, uy = cx / dc, cy / dc
    return cos * ux - sin * uy, sin * ux + cos * uy


@numba.njit(cache=True)
def _seek_batch(pos, need, centres, deep, kinds, obstacles, radii, speed, step_len):  # type: ignore[no-untyped-def]
    """Per arena: towards the station of kind need[b] nearest in gap |p - c| - deep, steered around obstacles,
    slowing on arrival so as to stop inside its deep part; clipped to the action box."""
    out = np.zeros((pos.shape[0], 2))
    for b in range(pos.shape[0]):
        px, py = pos[b, 0], pos[b, 1]
        best, gap, dist = -1, np.inf, 0.0
        for k in range(kinds.shape[0]):
            if kinds[k] != need[b]:
                continue
            d = math.sqrt((centres[k, 0] - px) ** 2 + (centres[k, 1] - py) ** 2)
            if d - deep[k] < gap:
                best, gap, dist = k, d - deep[k], d
        dx, dy = _steer(px, py, centres[best, 0], centres[best, 1], obstacles, radii)
        v = min(speed, max(dist - 0.5 * deep[best], 0.0) / step_len)
        out[b, 0] = min(max(dx * v, -1.0), 1.0)
        out[b, 1] = min(max(dy * v, -1.0), 1.0)
    return out
