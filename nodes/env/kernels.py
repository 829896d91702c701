"""GridLife's transition and observation, compiled with numba.

These are the equations of docs/gridlife.md, arena by arena. They are compiled because one env step of
a single arena is a few dozen tiny array operations, where numpy's per-call overhead would cost ten
times the arithmetic; and because the shield's gatekeeper rolls the same transition out hundreds of
steps per decision (nodes/shield/backup.py calls `transition` from its own kernels). gridlife.py wraps
them for batches; nothing else implements the dynamics.

Constants travel as one float64 vector indexed by the E_* names (`params`) and the layout as arrays
(`tables`); the shield's kernels pass a longer vector that starts with the same entries.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numba
import numpy as np

if TYPE_CHECKING:
    from nodes.env.gridlife import GridLifeConfig, GridLifeLayout

# indices into the parameter vector; the order is shared with nodes/shield/backup.py (P_*)
(E_DT, E_VMAX, E_L, E_KB, E_KE, E_RHO_E, E_EB, E_EE, E_EH, E_RHO_C, E_OW, E_DH, E_RHO_R) = range(13)
REFUEL, COOL, REPAIR = 0, 1, 2  # station kinds, as in gridlife.STATION_KINDS
FAR = math.sqrt(2.0)  # the observation of a feature kind the layout does not have


def params(cfg: GridLifeConfig) -> np.ndarray:
    """The constants the kernels read, in E_* order."""
    return np.array(
        [cfg.dt, cfg.vmax, cfg.arena_size, cfg.k_basal, cfg.k_effort, cfg.rho_refuel, cfg.eta_basal, cfg.eta_effort,
         cfg.eta_hot, cfg.rho_cool, cfg.omega_wear, cfg.delta_hazard, cfg.rho_repair],
        dtype=np.float64,
    )  # fmt: skip


def tables(layout: GridLifeLayout) -> tuple[np.ndarray, ...]:
    """Stations (centres, radii, kinds), hazards (centres, radii) and hot zones (centres, radii)."""
    return (
        np.ascontiguousarray(layout.station_centres, dtype=np.float64).reshape(-1, 2),
        np.ascontiguousarray(layout.station_radii, dtype=np.float64),
        np.ascontiguousarray(layout.station_kinds, dtype=np.int64),
        np.ascontiguousarray(layout.hazard_centres, dtype=np.float64).reshape(-1, 2),
        np.ascontiguousarray(layout.hazard_radii, dtype=np.float64),
        np.ascontiguousarray(layout.hot_centres, dtype=np.float64).reshape(-1, 2),
        np.ascontiguousarray(layout.hot_radii, dtype=np.float64),
    )


@numba.njit(cache=True, inline="always")
def inside(x, y, centres, radii, kinds, kind, strict):  # type: ignore[no-untyped-def]
    """1.0 if (x, y) lies in a disc of this kind (kind < 0: any disc): |p - c| - r <= 0 (< 0 if strict)."""
    for k in range(radii.shape[0]):
        if kind >= 0 and kinds[k] != kind:
            continue
        dx = x - centres[k, 0]
        dy = y - centres[k, 1]
        d = math.sqrt(dx * dx + dy * dy) - radii[k]
        if (d < 0.0) if strict else (d <= 0.0):
            return 1.0
    return 0.0


@numba.njit(cache=True, inline="always")
def internal_next(nx, ny, e, t, i, ax, ay, P, sc, sr, sk, hc, hr, zc, zr):  # type: ignore[no-untyped-def]
    """h' = (E', T', I') from h, the NEW position p' = (nx, ny) and the action."""
    work = 0.5 * (ax * ax + ay * ay)
    no_kind = np.zeros(0, dtype=np.int64)
    in_refuel = inside(nx, ny, sc, sr, sk, REFUEL, False)
    in_cool = inside(nx, ny, sc, sr, sk, COOL, False)
    in_repair = inside(nx, ny, sc, sr, sk, REPAIR, False)
    in_hot = inside(nx, ny, zc, zr, no_kind, -1, False)
    in_hazard = inside(nx, ny, hc, hr, no_kind, -1, True)
    return internal_update(e, t, i, work, in_refuel, in_cool, in_repair, in_hot, in_hazard, P)


@numba.njit(cache=True, inline="always")
def internal_update(e, t, i, work, in_refuel, in_cool, in_repair, in_hot, in_hazard, P):  # type: ignore[no-untyped-def]
    """h' from h, the effort |a|^2/2 and the indicators (0.0 or 1.0) of the new position: each of E', T', I' is
    nondecreasing in its own variable (the estimator's interval belief propagates its corners through it)."""
    dt = P[E_DT]
    e2 = min(1.0, e - dt * (P[E_KB] + P[E_KE] * work) + dt * P[E_RHO_E] * in_refuel)
    t2 = max(0.0, t + dt * (P[E_EB] + P[E_EE] * work + P[E_EH] * in_hot) - dt * P[E_RHO_C] * in_cool)
    i2 = min(1.0, i - dt * P[E_OW] * work - dt * P[E_DH] * in_hazard + dt * P[E_RHO_R] * in_repair)
    return e2, t2, i2


@numba.njit(cache=True, inline="always")
def transition(px, py, e, t, i, ax, ay, P, sc, sr, sk, hc, hr, zc, zr):  # type: ignore[no-untyped-def]
    """One step: p' = clip(p + dt vmax a, 0, L), then h'. Actions as float64 (float32 values are exact)."""
    s = P[E_DT] * P[E_VMAX]
    nx = min(max(px + s * ax, 0.0), P[E_L])
    ny = min(max(py + s * ay, 0.0), P[E_L])
    e2, t2, i2 = internal_next(nx, ny, e, t, i, ax, ay, P, sc, sr, sk, hc, hr, zc, zr)
    return nx, ny, e2, t2, i2


@numba.njit(cache=True)
def internal_batch(h, pos_next, actions, P, sc, sr, sk, hc, hr, zc, zr):  # type: ignore[no-untyped-def]
    """internal_next for rows of (N, 3) internal states, (N, 2) new positions and (N, 2) actions."""
    out = np.empty_like(h)
    for n in range(h.shape[0]):
        out[n, 0], out[n, 1], out[n, 2] = internal_next(
            pos_next[n, 0], pos_next[n, 1], h[n, 0], h[n, 1], h[n, 2], actions[n, 0], actions[n, 1],
            P, sc, sr, sk, hc, hr, zc, zr,
        )  # fmt: skip
    return out


@numba.njit(cache=True)
def _nearest_into(out, col, px, py, centres, radii, kinds, kind, edge, L):  # type: ignore[no-untyped-def]
    """(dx, dy, dist) / L to the nearest disc of a kind into out[col:col + 3]; dist to the centre, or signed
    to the edge when `edge`; (0, 0, FAR) when the layout has none."""
    best, best_score, bx, by = -1, np.inf, 0.0, 0.0
    for k in range(radii.shape[0]):
        if kind >= 0 and kinds[k] != kind:
            continue
        dx = centres[k, 0] - px
        dy = centres[k, 1] - py
        score = math.sqrt(dx * dx + dy * dy)
        if edge:
            score -= radii[k]
        if score < best_score:
            best, best_score, bx, by = k, score, dx, dy
    if best < 0:
        out[col], out[col + 1], out[col + 2] = 0.0, 0.0, FAR
    else:
        out[col], out[col + 1], out[col + 2] = bx / L, by / L, best_score / L


@numba.njit(cache=True)
def observe_batch(pos, velocity, h, tokens, with_internal, low, high, P, sc, sr, sk, hc, hr, zc, zr):  # type: ignore[no-untyped-def]
    """Observations (N, obs_dim) float32 in the order of gridlife.obs_names, clipped to [low, high]."""
    n = pos.shape[0]
    dim = low.shape[0]
    out = np.empty((n, dim), dtype=np.float32)
    row = np.empty(dim)
    no_kind = np.zeros(0, dtype=np.int64)
    token_radii = np.zeros(tokens.shape[1])
    L = P[E_L]
    for a in range(n):
        px, py = pos[a, 0], pos[a, 1]
        row[0], row[1], row[2], row[3] = px / L, py / L, velocity[a, 0], velocity[a, 1]
        _nearest_into(row, 4, px, py, sc, sr, sk, REFUEL, False, L)
        _nearest_into(row, 7, px, py, sc, sr, sk, COOL, False, L)
        _nearest_into(row, 10, px, py, sc, sr, sk, REPAIR, False, L)
        _nearest_into(row, 13, px, py, hc, hr, no_kind, -1, True, L)
        _nearest_into(row, 16, px, py, zc, zr, no_kind, -1, True, L)
        _nearest_into(row, 19, px, py, tokens[a], token_radii, no_kind, -1, False, L)
        if with_internal:
            for k in range(3):
                row[22 + k] = min(max(h[a, k], 0.0), 1.0)
        for k in range(dim):
            out[a, k] = min(max(row[k], low[k]), high[k])
    return out


@numba.njit(cache=True)
def step_batch(pos, h, actions, tokens, token_radius, P, sc, sr, sk, hc, hr, zc, zr):  # type: ignore[no-untyped-def]
    """`transition` for N arenas, plus what the step's books need of the new position: which tokens it
    reached, |p' - token| <= token_radius as an (N, K) mask, and the hazard margin min_k |p' - c_k| - r_k
    (L * sqrt(2) without hazards, so that it stays finite)."""
    n = pos.shape[0]
    pos_next = np.empty_like(pos)
    h_next = np.empty_like(h)
    hits = np.zeros((n, tokens.shape[1]), dtype=np.bool_)
    hazard = np.empty(n)
    for a in range(n):
        nx, ny, e2, t2, i2 = transition(pos[a, 0], pos[a, 1], h[a, 0], h[a, 1], h[a, 2], actions[a, 0],
                                        actions[a, 1], P, sc, sr, sk, hc, hr, zc, zr)  # fmt: skip
        pos_next[a, 0], pos_next[a, 1] = nx, ny
        h_next[a, 0], h_next[a, 1], h_next[a, 2] = e2, t2, i2
        for k in range(tokens.shape[1]):
            dx = tokens[a, k, 0] - nx
            dy = tokens[a, k, 1] - ny
            hits[a, k] = math.sqrt(dx * dx + dy * dy) <= token_radius
        hazard[a] = hazard_margin(nx, ny, P, hc, hr)
    return pos_next, h_next, hits, hazard


@numba.njit(cache=True, inline="always")
def hazard_margin(px, py, P, hc, hr):  # type: ignore[no-untyped-def]
    """min_k |p - c_k| - r_k; L * FAR without hazards (larger than any distance in the arena), so it stays finite."""
    margin = P[E_L] * FAR
    for k in range(hr.shape[0]):
        dx = px - hc[k, 0]
        dy = py - hc[k, 1]
        margin = min(margin, math.sqrt(dx * dx + dy * dy) - hr[k])
    return margin
