"""Description 3, nothing but margins: a one-step model of the env's margins learned online from its transitions,
`(obs, action) -> next margins`, as an ensemble of `OnlineRegressor`s so that their disagreement is measured.

A candidate action is judged safe when every margin's pessimistic prediction holds,
`mean - std_factor * spread - bound >= 0`: `spread` is the members' standard deviation and `bound` the
`calibration_quantile` of the ensemble mean's absolute error on held-out transitions (every `holdout_every`-th one,
never trained on). Until `min_samples` transitions are stored and the bound is measured the model certifies nothing
(`ready` false). Inputs are standardised with statistics frozen on the first `min_samples` transitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nodes.shield.online_regressor import OnlineRegressor


@dataclass(frozen=True)
class LearnedMarginsConfig:
    members: int = 3
    hidden: int = 64
    lr: float = 3e-3
    batch_size: int = 256
    buffer_size: int = 50_000
    min_samples: int = 2000
    holdout_every: int = 10
    holdout_size: int = 2000  # the newest held-out transitions the bound is measured on
    calibrate_every: int = 10  # train calls between measurements of the bound
    calibration_quantile: float = 0.99
    std_factor: float = 2.0
    disagreement_std: float = 0.05  # margin units: a spread above this at the proposal is degraded mode
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("members", "hidden", "batch_size", "buffer_size", "min_samples", "holdout_every", "holdout_size",
                     "calibrate_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if not 0.5 <= self.calibration_quantile <= 1.0:
            raise ValueError(f"calibration_quantile: must lie in [0.5, 1], got {self.calibration_quantile!r}")
        for name in ("lr", "std_factor", "disagreement_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")


class LearnedMargins:
    def __init__(self, obs_dim: int, act_dim: int, n_margins: int, cfg: LearnedMarginsConfig | None = None) -> None:
        self.cfg = cfg = LearnedMarginsConfig() if cfg is None else cfg
        self.obs_dim, self.act_dim, self.n_margins = obs_dim, act_dim, n_margins
        n_in = obs_dim + act_dim
        self.members = [OnlineRegressor(n_in, n_margins, hidden=cfg.hidden, lr=cfg.lr, batch_size=cfg.batch_size,
                                        buffer_size=cfg.buffer_size, seed=cfg.seed + k) for k in range(cfg.members)]
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []  # raw rows until the statistics are frozen
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.holdout_x = np.zeros((0, n_in), np.float32)
        self.holdout_y = np.zeros((0, n_margins), np.float32)
        self.seen = 0
        self.train_calls = 0
        self.bound = math.inf

    @property
    def ready(self) -> bool:
        return math.isfinite(self.bound)

    def add(self, obs: np.ndarray, actions: np.ndarray, next_margins: np.ndarray) -> None:
        """Transitions (B, obs_dim), agent-unit actions (B, act_dim), the margins of the states reached (B, M)."""
        x = np.concatenate([np.asarray(obs, np.float64), np.asarray(actions, np.float64)], axis=1)
        y = np.asarray(next_margins, np.float64).reshape(len(x), self.n_margins)
        keep = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
        x, y = x[keep], y[keep]
        if self.mean is None:
            self.pending.append((x, y))
            if sum(len(p[0]) for p in self.pending) < self.cfg.min_samples:
                return
            x, y = np.concatenate([p[0] for p in self.pending]), np.concatenate([p[1] for p in self.pending])
            self.pending = []
            self.mean, self.scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
        held = (self.seen + np.arange(len(x))) % self.cfg.holdout_every == 0
        self.seen += len(x)
        z = self._standard(x)
        limit = self.cfg.holdout_size
        self.holdout_x = np.concatenate([self.holdout_x, z[held]])[-limit:]
        self.holdout_y = np.concatenate([self.holdout_y, y[held].astype(np.float32)])[-limit:]
        for member in self.members:
            member.add(z[~held], y[~held].astype(np.float32))

    def train(self, steps: int) -> None:
        """`steps` minibatch steps per member; every `calibrate_every`-th call (and until it is first measured) the
        error bound is measured anew on the held-out transitions."""
        if self.mean is None or self.members[0].stored == 0:
            return
        for member in self.members:
            member.train(steps)
        self.train_calls += 1
        if len(self.holdout_x) >= 50 and (not self.ready or self.train_calls % self.cfg.calibrate_every == 0):
            mean, _ = self._ensemble(self.holdout_x)
            self.bound = float(np.quantile(np.abs(mean - self.holdout_y), self.cfg.calibration_quantile))

    def predict(self, obs: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pessimistic margins (K, M), spread (K, M)) for one observation and K agent-unit actions."""
        assert self.mean is not None
        x = np.concatenate([np.broadcast_to(np.asarray(obs, np.float64), (len(actions), self.obs_dim)),
                            np.asarray(actions, np.float64)], axis=1)
        mean, spread = self._ensemble(self._standard(x))
        return mean - self.cfg.std_factor * spread - self.bound, spread

    def _standard(self, x: np.ndarray) -> np.ndarray:
        assert self.mean is not None and self.scale is not None
        return ((x - self.mean) / self.scale).astype(np.float32)

    def _ensemble(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.stack([member.predict(z) for member in self.members]).astype(np.float64)
        return out.mean(axis=0), out.std(axis=0)
