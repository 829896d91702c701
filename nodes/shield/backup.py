"""Backup policy and rollout gatekeeper: the shield's proof that an action leaves the arena recoverable.

One-step barriers cannot promise recursive feasibility in GridLife (two urgent needs whose stations lie
in different directions, or an obstacle on the straight path, leave no feasible action). The gatekeeper
closes that gap with a backup policy and exact rollouts:

- `Gatekeeper.actions(p, h)`: the backup, a memoryless station keeper. It walks to stations along
  precomputed geodesic headings (Dijkstra on a grid over the arena, hazards and hot zones expensive to
  cross), fills up while standing in a station (the position is the mode, so no hidden state is needed),
  cools when T > temperature_go, refuels when E < energy_go, and otherwise goes home to the nearest refuel
  station and rests there. When I < integrity_go it leaves for the repair station only if the energy and
  heat budget covers the trip there and on to a bay (the budget falls along the way no faster than it is
  spent, so the choice does not flip back); otherwise it tops up at the bay nearest the repair station.
- `Gatekeeper.certify(p, h, a)`: applies a with the env's exact equations, then rolls the backup policy out, also
  exactly, until it reaches the terminal set S (resting in a refuel or cool station with
  E >= energy_go, T <= temperature_go, I >= integrity_go) within `horizon` steps without a violation.

The filter's action is executed only when it is certified; otherwise the backup action is. Induction:
if the rollout from x_t is viable and reaches S, so is the one from x_{t+1} = f(x_t, backup(x_t)) (it
is the same trajectory, one step shorter, because the rollout is bit-exact and the policy
memoryless), and a certified candidate makes x_{t+1} certified by definition. S must be recurrent
(from S the backup survives for ever): there it cycles between the two stations of its service bay and
leaves for the repair station only with the budget for the round trip. That is checked, not proved:
tests/shield/test_gatekeeper.py runs the backup for 20 000 steps from the corners of S on layouts 0-4,
and checks that every start state the env produces is certified.

The kernels are compiled with numba, because a rollout is a few hundred sequential steps per arena and
per decision. Each rollout step is the env's own compiled transition (nodes/env/kernels.py), so a
rollout is the trajectory the env would produce, bit for bit (tested against the env).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numba
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from nodes.config_fields import check_at_least, check_open_unit, check_ordered, check_types
from nodes.env import kernels
from nodes.env.gridlife import STATION_KINDS, GridLifeConfig, GridLifeLayout, build_layout, edge_distance
from nodes.env.kernels import hazard_margin, transition

REFUEL, COOL, REPAIR = (STATION_KINDS.index(k) for k in ("refuel", "cool", "repair"))


@dataclass(frozen=True)
class BackupConfig:
    """The backup policy's thresholds (units of h = (E, T, I)) and the gatekeeper's rollout settings."""

    enabled: bool = True  # off: the filter's action is executed uncertified (for contrast runs only)
    horizon: int = 1000  # rollout steps allowed to reach the terminal set
    speed: float = 1.0  # |a| while walking
    grid_spacing: float = 0.1  # metres between the nodes of the geodesic heading grid
    hazard_buffer: float = 0.3  # nodes this close to a hazard are expensive (the walk keeps clear)
    hot_buffer: float = 0.2  # the same for hot zones
    near_radius: float = 0.9  # within this of a station centre, walk straight to the centre
    station_inset: float = 0.15  # "in a station" means within radius - inset of its centre
    energy_full: float = 0.98  # stand in a refuel station until E reaches this
    energy_go: float = 0.6  # below this, go and refuel
    energy_reserve: float = 0.05  # leave for repair only if E minus the trip's cost to it and on to refuel stays above
    temperature_low: float = 0.1  # stand in a cool station until T falls to this
    temperature_go: float = 0.6  # above this, go and cool
    temperature_reserve: float = 0.85  # ... and T plus the trip's heat to it and on to a cool station stays below
    trip_slack: float = 1.05  # per-metre costs of the repair trip are those of the walk times this
    integrity_full: float = 0.95  # stand in the repair station until I reaches this
    integrity_go: float = 0.5  # below this, go and repair
    margin: float = 1e-9  # rollout states must keep every viability margin above this

    def __post_init__(self) -> None:
        check_types(self)
        check_at_least(self, ("horizon",), 1)
        check_at_least(self, (f.name for f in fields(self) if type(f.default) is float), 0.0)
        check_open_unit(self, ("speed",), closed_high=True)
        check_at_least(self, ("grid_spacing",), 0.0, strict=True)
        check_open_unit(self, ("energy_full", "energy_go", "energy_reserve", "temperature_low", "temperature_go",
                               "temperature_reserve", "integrity_full", "integrity_go"))  # fmt: skip
        check_ordered(self, (("energy_go", "energy_full"), ("temperature_low", "temperature_go"),
                             ("integrity_go", "integrity_full")))  # fmt: skip
        check_at_least(self, ("trip_slack",), 1.0)


# indices into the parameter vector handed to the kernels
(P_DT, P_VMAX, P_L, P_KB, P_KE, P_RHO_E, P_EB, P_EE, P_EH, P_RHO_C, P_OW, P_DH, P_RHO_R, P_GRID, P_SPEED,
 P_NEAR, P_INSET, P_E_FULL, P_E_GO, P_E_RES, P_T_LOW, P_T_GO, P_T_RES, P_I_FULL, P_I_GO, P_MARGIN, P_COST_E,
 P_COST_T) = range(28)  # fmt: skip


def kernel_params(env_cfg: GridLifeConfig, cfg: BackupConfig) -> np.ndarray:
    """The parameter vector the kernels index with the P_* constants: the env's (kernels.params) first."""
    e, c = env_cfg, cfg
    backup = [c.grid_spacing, c.speed, c.near_radius, c.station_inset, c.energy_full, c.energy_go, c.energy_reserve,
              c.temperature_low, c.temperature_go, c.temperature_reserve, c.integrity_full, c.integrity_go, c.margin,
              c.trip_slack * (e.k_basal + e.k_effort * 0.5 * c.speed**2) / (c.speed * e.vmax),
              c.trip_slack * (e.eta_basal + e.eta_effort * 0.5 * c.speed**2) / (c.speed * e.vmax)]  # fmt: skip
    return np.concatenate([kernels.params(env_cfg), backup])


class Gatekeeper:
    """Backup actions and rollout certificates for batches of GridLife states (see the module docstring)."""

    def __init__(
        self, env_cfg: GridLifeConfig, cfg: BackupConfig | None = None, layout: GridLifeLayout | None = None
    ) -> None:
        self.env_cfg = env_cfg
        self.cfg = BackupConfig() if cfg is None else cfg
        self.layout = build_layout(env_cfg) if layout is None else layout
        lay = self.layout
        self.params = kernel_params(env_cfg, self.cfg)
        self.tables = kernels.tables(lay)
        geodesic, headings = geodesic_headings(env_cfg, lay, self.cfg)
        # path length from each station on to the nearest refuel and cool station (the repair trip's way back)
        g = self.cfg.grid_spacing
        node = np.clip(np.rint(lay.station_centres / g).astype(np.int64), 0, geodesic.shape[1] - 1)
        at_station = geodesic[:, node[:, 0], node[:, 1]]  # (from target k, to station j)
        hops = np.zeros((len(lay.station_kinds), 2))
        hubs = np.zeros((len(lay.station_kinds), 2), dtype=np.int64)
        for col, kind in enumerate((REFUEL, COOL)):
            of_kind = np.flatnonzero(lay.station_kinds == kind)
            hops[:, col] = at_station[of_kind].min(axis=0)
            hubs[:, col] = of_kind[np.argmin(at_station[of_kind], axis=0)]
        self.tables = (*self.tables, np.ascontiguousarray(geodesic), np.ascontiguousarray(headings), hops, hubs)

    def _states(self, pos: np.ndarray, internal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.ascontiguousarray(pos, dtype=np.float64).reshape(-1, 2),
                np.ascontiguousarray(internal, dtype=np.float64).reshape(-1, 3))  # fmt: skip

    def actions(self, pos: np.ndarray, internal: np.ndarray) -> np.ndarray:
        """Backup actions (B, 2) float32 for states (B, 2), (B, 3)."""
        p, h = self._states(pos, internal)
        return _backup_batch(p, h, self.params, *self.tables)

    def certify(
        self, pos: np.ndarray, internal: np.ndarray, actions: np.ndarray, horizon: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ok (B,), steps (B,)): after `actions` (float32, as executed) the backup reaches S viably.

        `steps` is the rollout length used (to S, or to the first violation, or the horizon)."""
        p, h = self._states(pos, internal)
        a = np.ascontiguousarray(actions, dtype=np.float32).reshape(-1, 2)
        if not (len(p) == len(h) == len(a)):
            raise ValueError(f"actions: expected {len(p)} rows, got {len(a)}")
        steps = self.cfg.horizon if horizon is None else int(horizon)
        return _certify_batch(p, h, a, steps, True, self.params, *self.tables)

    def certified(self, pos: np.ndarray, internal: np.ndarray) -> np.ndarray:
        """(B,) the backup alone, from these states, reaches S viably within the horizon."""
        return self.certify(pos, internal, self.actions(pos, internal))[0]

    def survives(self, pos: np.ndarray, internal: np.ndarray, steps: int) -> np.ndarray:
        """(B,) following the backup for `steps` steps never breaks viability (no early stop in S)."""
        p, h = self._states(pos, internal)
        a = self.actions(p, h)
        return _certify_batch(p, h, a, int(steps), False, self.params, *self.tables)[0]

    def step(self, pos: np.ndarray, internal: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """The rollout's own env step: next positions (B, 2), internal states (B, 3) and viability (B,)."""
        p, h = self._states(pos, internal)
        a = np.ascontiguousarray(actions, dtype=np.float32).reshape(-1, 2)
        return _step_batch(p, h, a, self.params, *self.tables[:7])

    def in_terminal(self, pos: np.ndarray, internal: np.ndarray) -> np.ndarray:
        p, h = self._states(pos, internal)
        sc, sr, sk = self.tables[:3]
        return np.array(
            [_in_terminal(x[0], x[1], y[0], y[1], y[2], self.params, sc, sr, sk) for x, y in zip(p, h, strict=True)]
        )


# ------------------------------------------------------------------------------------ geodesic headings


def geodesic_headings(
    env_cfg: GridLifeConfig, layout: GridLifeLayout, cfg: BackupConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per station: weighted path length to it (S, N, N) and the unit heading to the next node (S, N, N, 2).

    Node (i, j) sits at (i, j) * grid_spacing. Crossing costs 1 per metre in the open, 4 in a hot zone
    (plus `hot_buffer`), 20 within `hazard_buffer` of a hazard and 400 inside one, so the walk keeps clear
    of hazards and heat, and a walker that starts close to a hazard steps away from it first."""
    g = cfg.grid_spacing
    n = round(env_cfg.arena_size / g) + 1
    axis = np.arange(n) * g
    nodes = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    cost = np.ones(len(nodes))
    if len(layout.hot_radii):
        cost = np.where(edge_distance(nodes, layout.hot_centres, layout.hot_radii).min(-1) < cfg.hot_buffer, 4.0, cost)
    if len(layout.hazard_radii):
        gap = edge_distance(nodes, layout.hazard_centres, layout.hazard_radii).min(-1)
        cost = np.where(gap < cfg.hazard_buffer, 20.0, cost)
        cost = np.where(gap < 0.0, 400.0, cost)
    index = np.arange(n * n).reshape(n, n)
    offsets = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]
    src, dst, weight = [], [], []
    for di, dj in offsets:
        a = index[max(0, -di) : n - max(0, di), max(0, -dj) : n - max(0, dj)].ravel()
        b = index[max(0, di) : n - max(0, -di), max(0, dj) : n - max(0, -dj)].ravel()
        src.append(a)
        dst.append(b)
        weight.append(math.hypot(di, dj) * g * 0.5 * (cost[a] + cost[b]))
    src_all, dst_all, w_all = np.concatenate(src), np.concatenate(dst), np.concatenate(weight)
    graph = coo_matrix((w_all, (src_all, dst_all)), shape=(n * n, n * n)).tocsr()
    targets = np.clip(np.rint(layout.station_centres / g).astype(np.int64), 0, n - 1)
    dist = dijkstra(graph, directed=False, indices=index[targets[:, 0], targets[:, 1]])  # (S, n*n)
    # heading: towards the neighbour that minimises edge weight + its distance (the next node of a shortest path)
    best = np.full(dist.shape, np.inf)
    heading = np.zeros((*dist.shape, 2))
    for (di, dj), a, b, w in zip(offsets, src, dst, weight, strict=True):
        via = w + dist[:, b]
        better = via < best[:, a]
        rows, cols = np.nonzero(better)
        best[rows, a[cols]] = via[rows, cols]
        heading[rows, a[cols]] = np.array([di, dj]) / math.hypot(di, dj)
    heading[np.arange(len(targets)), index[targets[:, 0], targets[:, 1]]] = 0.0
    return (np.ascontiguousarray(dist.reshape(-1, n, n)),
            np.ascontiguousarray(heading.reshape(-1, n, n, 2)))  # fmt: skip


# -------------------------------------------------------------------------------------------- kernels


@numba.njit(cache=True, inline="always")
def _env_step(px, py, e, t, i, ax32, ay32, P, sc, sr, sk, hc, hr, zc, zr):  # type: ignore[no-untyped-def]
    """The env's own transition (nodes/env/kernels.py) and whether the next state is viable (every margin
    above P_MARGIN)."""
    nx, ny, e2, t2, i2 = transition(px, py, e, t, i, np.float64(ax32), np.float64(ay32), P, sc, sr, sk, hc, hr, zc, zr)
    m = P[P_MARGIN]
    viable = e2 > m and 1.0 - t2 > m and i2 > m and hazard_margin(nx, ny, P, hc, hr) >= m
    return nx, ny, e2, t2, i2, viable


@numba.njit(cache=True, inline="always")
def _at_station(px, py, P, sc, sr, sk, kind):  # type: ignore[no-untyped-def]
    for k in range(sr.shape[0]):
        if sk[k] == kind:
            dx = px - sc[k, 0]
            dy = py - sc[k, 1]
            if math.sqrt(dx * dx + dy * dy) <= sr[k] - P[P_INSET]:
                return True
    return False


@numba.njit(cache=True, inline="always")
def _in_terminal(px, py, e, t, i, P, sc, sr, sk):  # type: ignore[no-untyped-def]
    """S: resting in a refuel or cool station with every variable on the good side of its 'go' level."""
    if not (e >= P[P_E_GO] and t <= P[P_T_GO] and i >= P[P_I_GO]):
        return False
    return _at_station(px, py, P, sc, sr, sk, REFUEL) or _at_station(px, py, P, sc, sr, sk, COOL)


@numba.njit(cache=True, inline="always")
def _nearest(kind, ix, iy, sk, geo):  # type: ignore[no-untyped-def]
    """The station of this kind with the shortest weighted path from node (ix, iy)."""
    best = -1
    for k in range(sk.shape[0]):
        if sk[k] == kind and (best < 0 or geo[k, ix, iy] < geo[best, ix, iy]):
            best = k
    return best


@numba.njit(cache=True)
def backup_action(px, py, e, t, i, P, sc, sr, sk, geo, heading, hops, hubs):  # type: ignore[no-untyped-def]
    """The backup action (float32 pair) at one state; see the module docstring for the rules."""
    zero = np.float32(0.0)
    if _at_station(px, py, P, sc, sr, sk, REPAIR) and i < P[P_I_FULL]:
        return zero, zero
    if _at_station(px, py, P, sc, sr, sk, COOL) and t > P[P_T_LOW]:
        return zero, zero
    if _at_station(px, py, P, sc, sr, sk, REFUEL) and e < P[P_E_FULL]:
        return zero, zero
    n = geo.shape[1]
    g = P[P_GRID]
    ix = min(max(math.floor(px / g + 0.5), 0), n - 1)
    iy = min(max(math.floor(py / g + 0.5), 0), n - 1)
    if i < P[P_I_GO]:
        # go for repair only with enough energy and cooling left for the trip there and on to a bay (the test
        # falls along the way by no more than the budget, so the choice does not flip back); otherwise top up
        # at the bay nearest the repair station (its hub), from where the trip is shortest
        r = _nearest(REPAIR, ix, iy, sk, geo)
        if e - P[P_COST_E] * (geo[r, ix, iy] + hops[r, 0]) < P[P_E_RES]:
            return _walk(int(hubs[r, 0]), px, py, ix, iy, P, sc, heading)
        if t + P[P_COST_T] * (geo[r, ix, iy] + hops[r, 1]) > P[P_T_RES]:
            return _walk(int(hubs[r, 1]), px, py, ix, iy, P, sc, heading)
        return _walk(r, px, py, ix, iy, P, sc, heading)
    if t > P[P_T_GO]:
        kind = COOL
    elif e < P[P_E_GO]:
        kind = REFUEL
    elif _at_station(px, py, P, sc, sr, sk, REFUEL) or _at_station(px, py, P, sc, sr, sk, COOL):
        return zero, zero
    else:
        kind = REFUEL  # nothing needed: go home and rest
    return _walk(_nearest(kind, ix, iy, sk, geo), px, py, ix, iy, P, sc, heading)


@numba.njit(cache=True)
def _walk(best, px, py, ix, iy, P, sc, heading):  # type: ignore[no-untyped-def]
    """Towards station `best`: straight to its centre when near, slowing to stop on it; else along the grid."""
    zero = np.float32(0.0)
    dx = sc[best, 0] - px
    dy = sc[best, 1] - py
    d = math.sqrt(dx * dx + dy * dy)
    speed = P[P_SPEED]
    if d <= P[P_NEAR]:
        if d < 1e-12:
            return zero, zero
        v = min(speed, d / (P[P_DT] * P[P_VMAX]))
        return np.float32(dx / d * v), np.float32(dy / d * v)
    return np.float32(speed * heading[best, ix, iy, 0]), np.float32(speed * heading[best, ix, iy, 1])


@numba.njit(cache=True)
def _backup_batch(pos, h, P, sc, sr, sk, hc, hr, zc, zr, geo, heading, hops, hubs):  # type: ignore[no-untyped-def]
    out = np.zeros((pos.shape[0], 2), dtype=np.float32)
    for b in range(pos.shape[0]):
        ax, ay = backup_action(pos[b, 0], pos[b, 1], h[b, 0], h[b, 1], h[b, 2], P, sc, sr, sk, geo, heading, hops, hubs)
        out[b, 0] = ax
        out[b, 1] = ay
    return out


@numba.njit(cache=True)
def certify_one(px, py, e, t, i, ax32, ay32, horizon, stop_in_terminal,  # type: ignore[no-untyped-def]
                P, sc, sr, sk, hc, hr, zc, zr, geo, heading, hops, hubs):
    """(ok, steps) of one state and action (float32): the action, then the backup's rollout (see `certify`)."""
    px, py, e, t, i, viable = _env_step(px, py, e, t, i, ax32, ay32, P, sc, sr, sk, hc, hr, zc, zr)
    k = 0
    while viable and k < horizon:
        if stop_in_terminal and _in_terminal(px, py, e, t, i, P, sc, sr, sk):
            break
        ax, ay = backup_action(px, py, e, t, i, P, sc, sr, sk, geo, heading, hops, hubs)
        px, py, e, t, i, viable = _env_step(px, py, e, t, i, ax, ay, P, sc, sr, sk, hc, hr, zc, zr)
        k += 1
    if stop_in_terminal:
        return viable and _in_terminal(px, py, e, t, i, P, sc, sr, sk), k
    return viable, k


@numba.njit(cache=True)
def _certify_batch(pos, h, actions, horizon, stop_in_terminal, P, sc, sr, sk, hc, hr, zc, zr, geo, heading, hops, hubs):  # type: ignore[no-untyped-def]
    n = pos.shape[0]
    ok = np.zeros(n, dtype=np.bool_)
    steps = np.zeros(n, dtype=np.int64)
    for b in range(n):
        ok[b], steps[b] = certify_one(
            pos[b, 0], pos[b, 1], h[b, 0], h[b, 1], h[b, 2], actions[b, 0], actions[b, 1], horizon, stop_in_terminal,
            P, sc, sr, sk, hc, hr, zc, zr, geo, heading, hops, hubs,
        )  # fmt: skip
    return ok, steps


@numba.njit(cache=True)
def _step_batch(pos, h, actions, P, sc, sr, sk, hc, hr, zc, zr):  # type: ignore[no-untyped-def]
    out_p = np.empty_like(pos)
    out_h = np.empty_like(h)
    viable = np.zeros(pos.shape[0], dtype=np.bool_)
    for b in range(pos.shape[0]):
        px, py, e, t, i, v = _env_step(
            pos[b, 0], pos[b, 1], h[b, 0], h[b, 1], h[b, 2], actions[b, 0], actions[b, 1],
            P, sc, sr, sk, hc, hr, zc, zr,
        )  # fmt: skip
        out_p[b, 0], out_p[b, 1], out_h[b, 0], out_h[b, 1], out_h[b, 2], viable[b] = px, py, e, t, i, v
    return out_p, out_h, viable
