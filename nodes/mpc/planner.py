"""Reach-avoid MPC by the cross-entropy method (CEM), scored with GridLife's known model and the shield's own parts.

For each arena, ``population`` action sequences of ``horizon`` steps are drawn from a Gaussian, rolled out with
the env's exact transition (the shield gatekeeper's ``step``, the same compiled kernel the env steps), and scored;
the ``elites`` best refit the Gaussian, ``iterations`` times. The first action of the final mean is proposed, and
the rest of the mean, shifted by one step, starts the next plan. A sequence's cost (lower is better):

    cost = W_VIOLATION * #(non-viable rollout states)                      avoid: the non-viable set
         + W_BARRIER  * sum_t sum_rows max(0, -h_i(x_t))                   avoid: leaving the shield's barrier set
         + W_UNCERTIFIED * 1[backup cannot bring x_H back to its rest set]  avoid: the viability approximator
         + W_DRIVE * D(h_H) + sum_k need_k(h_0) * geodesic_k(p_H)           reach: the station each need calls for
         - W_TOKEN * 1[a token reached] + W_TOKEN_PULL * |p_H - token|      reach: the task, when nothing is needed

``geodesic_k`` is the gatekeeper's path length to the nearest station of kind k (around hazards and hot zones,
nodes/shield/backup.py), the barriers h_i are the shield's CBFs (nodes/shield/barriers.py), and the certificate at
x_H is the gatekeeper's rollout of its backup policy: all reused, none re-derived here. The shield still filters
every proposed action; the plan only makes interventions rare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from nodes.env.gridlife import GridLifeConfig
from nodes.env.homeostat import Homeostat
from nodes.shield.backup import Gatekeeper
from nodes.shield.barriers import GridLifeBarriers

W_VIOLATION, W_BARRIER, W_UNCERTIFIED = 1000.0, 100.0, 50.0
W_DRIVE, W_NEED, W_TOKEN, W_TOKEN_PULL = 1.0, 2.0, 1.0, 0.2
KINDS = ("refuel", "cool", "repair")


@dataclass(frozen=True)
class MPCConfig:
    horizon: int = 12  # steps per planned sequence
    population: int = 64  # sequences per arena and iteration
    iterations: int = 3  # CEM refits per decision
    elites: int = 8  # best sequences that refit the Gaussian
    init_std: float = 0.6  # std of the first iteration's Gaussian, per action component
    certify_horizon: int = 100  # steps the backup gets to bring the plan's end state back to rest
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "init_std":
                if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value)
                                                                                         and value > 0):
                    raise ValueError(f"MPC field 'init_std' must be a finite number > 0, got {value!r}")
                continue
            low = 0 if f.name == "seed" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"MPC field '{f.name}' must be an integer >= {low}, got {value!r}")
        if self.elites > self.population:
            raise ValueError(f"MPC field 'elites' must be <= population ({self.population}), got {self.elites}")


class CEMPlanner:
    def __init__(self, env_cfg: GridLifeConfig, cfg: MPCConfig | None = None) -> None:
        self.env_cfg, self.cfg = env_cfg, cfg or MPCConfig()
        self.gatekeeper = Gatekeeper(env_cfg)
        self.barriers = GridLifeBarriers(env_cfg)
        self.homeostat = Homeostat(env_cfg.setpoints, env_cfg.drive_weights, env_cfg.drive_form, env_cfg.drive_n,
                                   env_cfg.drive_m)
        layout = self.gatekeeper.layout
        geodesic = self.gatekeeper.tables[7]  # (stations, n, n): path length to each station from every grid node
        # per kind, the path length to its nearest station; a hazard's cost makes geodesics avoid it
        self.geodesic = np.stack([geodesic[layout.station_kinds == k].min(axis=0) for k in range(len(KINDS))])
        self.grid = self.gatekeeper.cfg.grid_spacing
        self.rng = np.random.default_rng(self.cfg.seed)
        self.mean: np.ndarray | None = None  # (N, H, 2) the last plans, warm start of the next

    def reset(self) -> None:
        self.mean = None

    def needs(self, internal: np.ndarray) -> np.ndarray:
        """(N, 3) how strongly each station kind is called for: low energy, high heat, low integrity."""
        e, t, i = internal[:, 0], internal[:, 1], internal[:, 2]
        return np.stack([np.clip((0.9 - e) / 0.9, 0, 1), np.clip((t - 0.3) / 0.7, 0, 1),
                         np.clip((0.9 - i) / 0.9, 0, 1)], axis=1) ** 2 * W_NEED

    def path_length(self, pos: np.ndarray) -> np.ndarray:
        """(..., 3) geodesic path length from positions (..., 2) to the nearest station of each kind."""
        n = self.geodesic.shape[1]
        idx = np.clip(np.rint(pos / self.grid).astype(np.int64), 0, n - 1)
        return np.moveaxis(self.geodesic[:, idx[..., 0], idx[..., 1]], 0, -1)

    def cost(self, pos: np.ndarray, internal: np.ndarray, token: np.ndarray | None, seqs: np.ndarray) -> np.ndarray:
        """Costs (N, K) of sequences (N, K, H, 2) from states (N, 2), (N, 3); token (N, 2) positions or None."""
        n, k, h, _ = seqs.shape
        p = np.repeat(pos, k, axis=0)
        q = np.repeat(internal, k, axis=0)
        cost = np.zeros(n * k)
        reached = np.zeros(n * k, dtype=bool)
        tok = None if token is None else np.repeat(token, k, axis=0)
        for t in range(h):
            p, q, viable = self.gatekeeper.step(p, q, seqs[:, :, t].reshape(-1, 2))
            cost += W_VIOLATION * ~viable
            cost += W_BARRIER * np.maximum(0.0, -self.barriers.values(p, q)).sum(axis=-1)
            if tok is not None:
                reached |= np.linalg.norm(p - tok, axis=-1) <= self.env_cfg.token_radius
        ok, _ = self.gatekeeper.certify(p, q, self.gatekeeper.actions(p, q), self.cfg.certify_horizon)
        cost += W_UNCERTIFIED * ~ok
        need = np.repeat(self.needs(internal), k, axis=0)
        cost += W_DRIVE * self.homeostat.drive(q) + (need * self.path_length(p)).sum(axis=-1)
        if tok is not None:
            calm = need.sum(axis=-1) < 0.1 * W_NEED  # chase tokens only while no need is pressing
            cost += calm * (W_TOKEN_PULL * np.linalg.norm(p - tok, axis=-1) - W_TOKEN * reached)
        return cost.reshape(n, k)

    def plan(self, pos: np.ndarray, internal: np.ndarray, token: np.ndarray | None = None) -> np.ndarray:
        """Actions (N, 2) float32 in [-1, 1] for states (N, 2), (N, 3) and the nearest token's position (N, 2)."""
        cfg = self.cfg
        pos, internal = np.asarray(pos, np.float64), np.asarray(internal, np.float64)
        n = pos.shape[0]
        if self.mean is None or self.mean.shape[0] != n:
            self.mean = np.zeros((n, cfg.horizon, 2))
        mean = np.concatenate([self.mean[:, 1:], self.mean[:, -1:]], axis=1)  # last plan, one step on
        std = np.full_like(mean, cfg.init_std)
        rows = np.arange(n)[:, None]
        for _ in range(cfg.iterations):
            noise = self.rng.standard_normal((n, cfg.population, cfg.horizon, 2))
            seqs = np.clip(mean[:, None] + std[:, None] * noise, -1.0, 1.0).astype(np.float32)
            seqs[:, 0] = np.clip(mean, -1.0, 1.0)  # the current mean competes too
            costs = self.cost(pos, internal, token, seqs)
            elite = seqs[rows, np.argsort(costs, axis=1)[:, : cfg.elites]]  # (N, E, H, 2)
            mean, std = elite.mean(axis=1).astype(np.float64), elite.std(axis=1) + 0.05
        self.mean = mean
        return np.clip(mean[:, 0], -1.0, 1.0).astype(np.float32)
