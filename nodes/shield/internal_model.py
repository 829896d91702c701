"""Next-state predictors used to verify candidate actions.

- `KnownInternalModel`: the env's own equations (nodes/env/gridlife.py), exact, error bound 0.
- `LearnedInternalModel`: a small torch regressor of the change in (E, T, I), trained online from
  transitions. Its inputs are the effort |a|^2/2 and the disc indicators at the next position (the
  layout is known; the rates are what is learned). Its error bound is the `error_quantile` of the
  absolute residuals on the buffer times `error_factor`, refreshed after every training round;
  until `min_samples` transitions have been trained on, the bound is infinite, so nothing verifies.

Both take positions (..., 2), internal states (..., 3) and actions (..., 2) with broadcasting, and
return the next positions, next internal states and a per-variable error bound (3,).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numba
import numpy as np

from nodes.env import kernels
from nodes.env.gridlife import (
    GridLifeConfig,
    GridLifeLayout,
    build_layout,
    effort,
    inside_any,
    internal_step,
    next_position,
)
from nodes.shield.barriers import GridLifeBarriers, _values_one
from nodes.shield.online_regressor import OnlineRegressor
from persist_rt import checkpoint

FORMAT = "persist.shield.internal_model/1"


class InternalModel(Protocol):
    def predict(
        self, pos: np.ndarray, internal: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class KnownInternalModel:
    """The documented GridLife equations."""
    """The env's own equations (nodes/env/kernels.py), exact."""
    def __init__(self, env_cfg: GridLifeConfig, layout: GridLifeLayout | None = None) -> None:
        self.env_cfg = env_cfg
        self.layout = build_layout(env_cfg) if layout is None else layout
        self.error_bound = np.zeros(3)
        self.params, self.tables = kernels.params(env_cfg), kernels.tables(self.layout)

    def predict(
        self, pos: np.ndarray, internal: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos_next = next_position(pos, actions, self.env_cfg)
        return pos_next, internal_step(internal, pos_next, actions, self.env_cfg, self.layout), self.error_bound

    def cbf_slack(
        self, barriers: GridLifeBarriers, pos: np.ndarray, internal: np.ndarray, actions: np.ndarray
    ) -> np.ndarray:
        """h(x') - (1 - gamma) h(x) (B, C, R) for candidates (B, C, 2) at states (B, 2), (B, 3), in one
        compiled pass (the search verifies hundreds of candidates per arena)."""
        p = np.ascontiguousarray(pos, dtype=np.float64).reshape(-1, 2)
        h = np.ascontiguousarray(internal, dtype=np.float64).reshape(-1, 3)
        a = np.ascontiguousarray(actions, dtype=np.float64)
        out = np.empty((a.shape[0], a.shape[1], barriers.n_rows))
        _cbf_slack(p, h, a, out, barriers.gamma, self.params, self.tables, barriers.kernel_tables)
        return out


@dataclass(frozen=True)
class LearnedModelConfig:
    hidden: int = 64
    lr: float = 1e-3
    batch_size: int = 256
    buffer_size: int = 50_000
    min_samples: int = 2_000  # transitions trained on before the model may verify anything
    error_quantile: float = 0.999
    error_factor: float = 1.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden", "batch_size", "buffer_size", "min_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: must be > 0, got {self.lr!r}")
        if not 0.5 <= self.error_quantile <= 1.0:
            raise ValueError(f"error_quantile: must lie in [0.5, 1], got {self.error_quantile!r}")
        if not self.error_factor >= 1.0:
            raise ValueError(f"error_factor: must be >= 1, got {self.error_factor!r}")


N_FEATURES = 9  # E, T, I, effort, refuel, cool, repair, hot, hazard


class LearnedInternalModel:
    """Online regressor of h' - h from (h, effort, indicators at p')."""

    def __init__(
        self, env_cfg: GridLifeConfig, cfg: LearnedModelConfig | None = None, layout: GridLifeLayout | None = None
    ) -> None:
        self.env_cfg = env_cfg
        self.cfg = cfg = LearnedModelConfig() if cfg is None else cfg
        self.layout = build_layout(env_cfg) if layout is None else layout
        self.regressor = OnlineRegressor(N_FEATURES, 3, hidden=cfg.hidden, lr=cfg.lr, batch_size=cfg.batch_size,
                                         buffer_size=cfg.buffer_size, seed=cfg.seed)
        self.net = self.regressor.net
        self.error_bound = np.full(3, np.inf)

    @property
    def trained_on(self) -> int:
        return self.regressor.trained_on

    @property
    def ready(self) -> bool:
        return self.trained_on >= self.cfg.min_samples and bool(np.isfinite(self.error_bound).all())

    def features(self, pos_next: np.ndarray, internal: np.ndarray, actions: np.ndarray) -> np.ndarray:
        lay = self.layout
        flags = [inside_any(pos_next, *lay.stations(kind)) for kind in ("refuel", "cool", "repair")]
        flags.append(inside_any(pos_next, lay.hot_centres, lay.hot_radii))
        flags.append(inside_any(pos_next, lay.hazard_centres, lay.hazard_radii, strict=True))
        work = effort(actions)
        shape = np.broadcast_shapes(work.shape, np.shape(internal)[:-1])
        parts = [np.broadcast_to(internal, (*shape, 3)), np.broadcast_to(work, shape)[..., None]]
        parts += [np.broadcast_to(f, shape)[..., None] for f in flags]
        return np.concatenate(parts, axis=-1).astype(np.float32)

    def add(self, pos: np.ndarray, internal: np.ndarray, actions: np.ndarray, internal_next: np.ndarray) -> None:
        """Store transitions (B rows): positions p, internal h, actions a and the observed h'."""
        pos_next = next_position(np.asarray(pos, dtype=np.float64), actions, self.env_cfg)
        x = self.features(pos_next, np.asarray(internal, dtype=np.float64), np.asarray(actions)).reshape(-1, N_FEATURES)
        y = (np.asarray(internal_next, dtype=np.float64) - np.asarray(internal, dtype=np.float64)).reshape(-1, 3)
        if x.shape[0] != y.shape[0] or not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("transitions: internal/internal_next must be finite and have matching batch sizes")
        self.regressor.add(x, y.astype(np.float32))

    def train(self, steps: int) -> float:
        """Run `steps` Adam steps on random minibatches; refresh the error bound; return the last loss."""
        reg = self.regressor
        loss_value = reg.train(steps)
        n = reg.stored
        residual = np.abs(reg.predict(reg.x[:n]) - reg.y[:n])
        self.error_bound = self.cfg.error_factor * np.quantile(residual, self.cfg.error_quantile, axis=0)
        return loss_value

    def predict(
        self, pos: np.ndarray, internal: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos_next = next_position(pos, actions, self.env_cfg)
        h = np.asarray(internal, dtype=np.float64)
        x = self.features(pos_next, h, actions)
        delta = self.regressor.predict(x.reshape(-1, N_FEATURES)).reshape(*x.shape[:-1], 3)
        return pos_next, np.clip(h + delta, 0.0, 1.0), self.error_bound

    def save(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        meta = dict(metadata or {}, format=FORMAT, hidden=self.cfg.hidden, trained_on=self.trained_on)
        tensors = {k: v.detach().numpy() for k, v in self.net.state_dict().items()}
        tensors["error_bound"] = self.error_bound.astype(np.float64)
        checkpoint.save(path, tensors, meta)

    def load(self, path: str) -> None:
        tensors, meta = checkpoint.load(path)
        checkpoint.check_meta(meta, path, format=FORMAT, hidden=self.cfg.hidden)
        state = self.net.state_dict()
        expected = {k: (tuple(v.shape), "float32") for k, v in state.items()}
        expected["error_bound"] = ((3,), "float64")
        checkpoint.check_tensors(tensors, expected, path)
        import torch

        self.net.load_state_dict({k: torch.from_numpy(tensors[k].copy()) for k in state})
        self.error_bound = tensors["error_bound"].copy()
        self.regressor.trained_on = int(meta.get("trained_on", 0))


@numba.njit(cache=True)
def _cbf_slack(pos, h, actions, out, gamma, params, dynamics, barrier):  # type: ignore[no-untyped-def]
    sc, sr, sk, hc, hr, zc, zr = dynamics
    bp, centres, radii, reach, bounds = barrier
    now = np.empty(out.shape[2])
    for n in range(actions.shape[0]):
        _values_one(pos[n, 0], pos[n, 1], h[n, 0], h[n, 1], h[n, 2], now, bp, centres, radii, reach, bounds)
        for c in range(actions.shape[1]):
            px, py, e, t, i = kernels.transition(pos[n, 0], pos[n, 1], h[n, 0], h[n, 1], h[n, 2], actions[n, c, 0],
                                                 actions[n, c, 1], params, sc, sr, sk, hc, hr, zc, zr)  # fmt: skip
            _values_one(px, py, e, t, i, out[n, c], bp, centres, radii, reach, bounds)
            for r in range(out.shape[2]):
                out[n, c, r] -= (1.0 - gamma[r]) * now[r]
