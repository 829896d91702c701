"""An exact interval belief over GridLife's hidden internal variables, from its known dynamics.

The internal variables are hidden, but everything that drives them is in the observation: the new
position p' (``pos_x, pos_y`` times L) and the executed action (``vel = vmax * a``), so the effort
|a|^2/2 and the station, hot-zone and hazard indicators of p'. Each of E', T', I' is nondecreasing in
its own variable alone (kernels.internal_update), so the box [low, high] maps onto the box of the
next step through its two corners: the worst (least energy, most heat, least integrity, with each
indicator at its worse value) and the best. The truth starts inside ``start_box`` (setpoints +-
init_spread, clipped) and so stays inside for ever: coverage 100% by construction, not by calibration.

Where the observation leaves an indicator in doubt (the float32 position within ``position_tol`` of a
disc's edge) both values are taken, one per corner; a stream that skips a step, or an arena met
mid-episode, starts from the whole range [0, 1]. Everything here reads only the observation, so the
replay stream's beliefs (the estimator's ``estimator/transitions``) are the ones the agent acted on.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from nodes.env import kernels
from nodes.env.gridlife import GridLifeConfig, build_layout, start_box
from nodes.env.kernels import COOL, E_L, E_VMAX, REFUEL, REPAIR, internal_update

WHOLE_LOW, WHOLE_HIGH = np.zeros(3), np.ones(3)  # no knowledge: every internal variable lives in [0, 1]


class IntervalBelief:
    """Boxes [low, high] (N, 3) per arena, advanced one observation at a time (see the module docstring)."""

    def __init__(self, cfg: GridLifeConfig) -> None:
        self.cfg = cfg
        self.params = kernels.params(cfg)
        self.tables = kernels.tables(build_layout(cfg))
        self.start_low, self.start_high = start_box(cfg)
        # float32 positions are pos/L rounded to 2^-24 relative: an edge closer than this is in doubt
        self.position_tol = 1e-6 * cfg.arena_size + 1e-9
        self.effort_tol = 0.0 if cfg.vmax == 1.0 else 1e-6  # vel/vmax is the float32 action exactly when vmax = 1
        self.low: np.ndarray | None = None
        self.high: np.ndarray | None = None
        self.step = -1

    def advance(self, step: int, obs: np.ndarray, episode_step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The boxes of step ``step`` from its observation (N, obs_dim) and the arenas' ``episode_step``."""
        n = obs.shape[0]
        fresh = np.asarray(episode_step) == 0
        follows = self.low is not None and self.low.shape[0] == n and step == self.step + 1
        if follows:
            low, high = self.propagate(self.low, self.high, obs)  # type: ignore[arg-type]
        else:  # first step, a new set of arenas, or a gap in the stream: nothing is known of running episodes
            low, high = np.tile(WHOLE_LOW, (n, 1)), np.tile(WHOLE_HIGH, (n, 1))
        low[fresh], high[fresh] = self.start_low, self.start_high
        self.low, self.high, self.step = low, high, step
        return low, high

    def propagate(self, low: np.ndarray, high: np.ndarray, obs_next: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The boxes after one step, from the boxes before it and the observation after it (rows of arenas)."""
        obs = np.ascontiguousarray(obs_next[:, :4], dtype=np.float64)
        return _propagate_batch(np.ascontiguousarray(low, dtype=np.float64),
                                np.ascontiguousarray(high, dtype=np.float64), obs, self.position_tol,
                                self.effort_tol, self.params, *self.tables)  # fmt: skip


def worst_drift(cfg: GridLifeConfig) -> np.ndarray:
    """(3,) the most each internal variable can move in its bad direction in one step (full effort, hot zone,
    hazard): a box known ``g`` steps ago, widened by ``g`` times this on its bad side, still holds the truth."""
    return cfg.dt * np.array([cfg.k_basal + cfg.k_effort, cfg.eta_basal + cfg.eta_effort + cfg.eta_hot,
                              cfg.omega_wear + cfg.delta_hazard])  # fmt: skip


def as_estimate(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 with mean +- std covering [low, high] despite the rounding to float32: the
    half-width is rounded up by more than the two roundings can lose."""
    mean = (0.5 * (low + high)).astype(np.float32)
    half = np.maximum(high - mean.astype(np.float64), mean.astype(np.float64) - low)
    return mean, (half * (1.0 + 1e-6) + 1e-6).astype(np.float32)


@numba.njit(cache=True, inline="always")
def _edge_gap(x, y, centres, radii, kinds, kind):  # type: ignore[no-untyped-def]
    """min_k |p - c_k| - r_k over the discs of a kind (kind < 0: all); +inf when there are none."""
    best = np.inf
    for k in range(radii.shape[0]):
        if kind >= 0 and kinds[k] != kind:
            continue
        d = math.sqrt((x - centres[k, 0]) ** 2 + (y - centres[k, 1]) ** 2) - radii[k]
        best = min(best, d)
    return best


@numba.njit(cache=True, inline="always")
def _surely_possibly(gap, tol):  # type: ignore[no-untyped-def]
    """(surely inside, possibly inside) of a disc whose edge is `gap` away, the position known to `tol`."""
    return (1.0 if gap < -tol else 0.0), (1.0 if gap <= tol else 0.0)


@numba.njit(cache=True)
def _propagate_batch(low, high, obs, tol, effort_tol, P, sc, sr, sk, hc, hr, zc, zr):  # type: ignore[no-untyped-def]
    n = low.shape[0]
    out_low = np.empty_like(low)
    out_high = np.empty_like(high)
    no_kind = np.zeros(0, dtype=np.int64)
    L, vmax = P[E_L], P[E_VMAX]
    for a in range(n):
        x, y = obs[a, 0] * L, obs[a, 1] * L
        ax, ay = obs[a, 2] / vmax, obs[a, 3] / vmax
        work = 0.5 * (ax * ax + ay * ay)
        w_lo, w_hi = work * (1.0 - effort_tol), work * (1.0 + effort_tol)
        refuel = _surely_possibly(_edge_gap(x, y, sc, sr, sk, REFUEL), tol)
        cool = _surely_possibly(_edge_gap(x, y, sc, sr, sk, COOL), tol)
        repair = _surely_possibly(_edge_gap(x, y, sc, sr, sk, REPAIR), tol)
        hot = _surely_possibly(_edge_gap(x, y, zc, zr, no_kind, -1), tol)
        hazard = _surely_possibly(_edge_gap(x, y, hc, hr, no_kind, -1), tol)
        # worst corner: least energy and integrity, most heat, each indicator at its worse value
        e, t, i = internal_update(low[a, 0], high[a, 1], low[a, 2], w_hi, refuel[0], cool[0], repair[0], hot[1],
                                  hazard[1], P)  # fmt: skip
        out_low[a, 0], out_high[a, 1], out_low[a, 2] = e, t, i
        e, t, i = internal_update(high[a, 0], low[a, 1], high[a, 2], w_lo, refuel[1], cool[1], repair[1], hot[0],
                                  hazard[0], P)  # fmt: skip
        out_high[a, 0], out_low[a, 1], out_high[a, 2] = e, t, i
    return out_low, out_high
