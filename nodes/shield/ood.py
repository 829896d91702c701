"""Energy-based out-of-distribution score on the state.

The energy of a state is its negative log density under a diagonal Gaussian mixture fitted by EM
to the states seen in training: E(x) = -logsumexp_k(log pi_k + log N(x; mu_k, diag var_k)). The
threshold is the `quantile` of the training energies plus `margin` nats; a state above it is OOD
and the shield hands it to the fallback policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from persist_rt import checkpoint
from persist_rt.checkpoint import CheckpointError

FORMAT = "persist.shield.ood/1"


@dataclass(frozen=True)
class OODConfig:
    components: int = 8
    iterations: int = 60
    quantile: float = 0.995  # of the training energies
    margin: float = 2.0  # nats added to that quantile
    min_variance: float = 1e-4  # floor per dimension, in squared state units
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("components", "iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if not 0.5 <= self.quantile <= 1.0:
            raise ValueError(f"quantile: must lie in [0.5, 1], got {self.quantile!r}")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"margin: must be >= 0, got {self.margin!r}")
        if not self.min_variance > 0:
            raise ValueError(f"min_variance: must be > 0, got {self.min_variance!r}")


class EnergyOOD:
    """Gaussian-mixture energy score with a calibrated threshold."""

    def __init__(self, cfg: OODConfig | None = None) -> None:
        self.cfg = OODConfig() if cfg is None else cfg
        self.means: np.ndarray | None = None  # (K, D)
        self.variances: np.ndarray | None = None  # (K, D)
        self.log_weights: np.ndarray | None = None  # (K,)
        self.threshold = math.inf

    @property
    def fitted(self) -> bool:
        return self.means is not None

    def fit(self, states: np.ndarray) -> EnergyOOD:
        """EM on (N, D) states (k-means++ start), then calibrate the threshold on the same states."""
        x = np.asarray(states, dtype=np.float64)
        k = self.cfg.components
        if x.ndim != 2 or x.shape[0] < 2 * k:
            raise ValueError(f"states: expected shape (N, D) with N >= {2 * k}, got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("states: must be finite")
        rng = np.random.default_rng(self.cfg.seed)
        means = x[rng.integers(len(x))][None, :]
        for _ in range(1, k):  # k-means++ seeding
            d2 = ((x[:, None, :] - means[None]) ** 2).sum(-1).min(axis=1)
            means = np.vstack([means, x[rng.choice(len(x), p=d2 / d2.sum()) if d2.sum() > 0 else 0]])
        floor = self.cfg.min_variance
        variances = np.tile(np.maximum(x.var(axis=0), floor), (k, 1))
        log_w = np.full(k, -math.log(k))
        for _ in range(self.cfg.iterations):
            log_p = _component_log_density(x, means, variances) + log_w
            resp = np.exp(log_p - _logsumexp(log_p, axis=1)[:, None])  # (N, K)
            nk = resp.sum(axis=0) + 1e-12
            means = resp.T @ x / nk[:, None]
            variances = np.maximum(resp.T @ (x * x) / nk[:, None] - means**2, floor)
            log_w = np.log(nk / nk.sum())
        self.means, self.variances, self.log_weights = means, variances, log_w
        self.threshold = float(np.quantile(self.energy(x), self.cfg.quantile)) + self.cfg.margin
        return self

    def energy(self, states: np.ndarray) -> np.ndarray:
        """Negative log density (..., D) -> (...); higher is less familiar."""
        if self.means is None:
            raise ValueError("EnergyOOD: not fitted; call fit() or load() first")
        x = np.asarray(states, dtype=np.float64)
        if x.shape[-1] != self.means.shape[1]:
            raise ValueError(f"states: last dimension must be {self.means.shape[1]}, got shape {x.shape}")
        flat = x.reshape(-1, x.shape[-1])
        log_p = _component_log_density(flat, self.means, self.variances) + self.log_weights
        return -_logsumexp(log_p, axis=1).reshape(x.shape[:-1])

    def is_ood(self, states: np.ndarray) -> np.ndarray:
        """True where the energy exceeds the threshold, or the state is not finite."""
        x = np.asarray(states, dtype=np.float64)
        finite = np.isfinite(x).all(axis=-1)
        score = self.energy(np.where(finite[..., None], x, 0.0))
        return ~finite | (score > self.threshold)

    def save(self, path: str | Path) -> Path:
        if self.means is None:
            raise ValueError("EnergyOOD: nothing to save, not fitted")
        tensors = {"means": self.means, "variances": self.variances, "log_weights": self.log_weights}
        return checkpoint.save(path, tensors, {"format": FORMAT, "threshold": self.threshold})

    @classmethod
    def load(cls, path: str | Path, cfg: OODConfig | None = None) -> EnergyOOD:
        tensors, meta = checkpoint.load(path)
        src = str(path)
        checkpoint.check_meta(meta, src, format=FORMAT)
        threshold = meta.get("threshold")
        if not isinstance(threshold, int | float) or not math.isfinite(threshold):
            raise CheckpointError(f"{src}: field 'threshold' must be a finite number, got {threshold!r}")
        means = tensors.get("means")
        if means is None or means.ndim != 2:
            raise CheckpointError(f"{src}: tensor 'means' must be present with shape (K, D)")
        k, d = means.shape
        checkpoint.check_tensors(
            tensors,
            {"means": ((k, d), "float64"), "variances": ((k, d), "float64"), "log_weights": ((k,), "float64")},
            src,
        )
        if not all(np.isfinite(t).all() for t in tensors.values()) or (tensors["variances"] <= 0).any():
            raise CheckpointError(f"{src}: tensors must be finite with positive 'variances'")
        out = cls(cfg)
        out.means, out.variances, out.log_weights = means, tensors["variances"], tensors["log_weights"]
        out.threshold = float(threshold)
        return out


def _component_log_density(x: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """log N(x; mu_k, diag var_k) for (N, D) x: (N, K)."""
    diff = x[:, None, :] - means[None]
    return -0.5 * ((diff * diff) / variances + np.log(2.0 * math.pi * variances)).sum(axis=-1)


def _logsumexp(v: np.ndarray, axis: int) -> np.ndarray:
    top = v.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(v - top).sum(axis=axis, keepdims=True))).squeeze(axis)
