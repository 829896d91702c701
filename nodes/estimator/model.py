"""GRU state estimator: observation history -> Gaussian belief (mean, std) over hidden internal variables.

Training uses trajectories that carry the truth (the env knows it): Gaussian negative log-likelihood
with a learned log-variance, by truncated backpropagation through time (the hidden state is carried
across chunks of ``chunk_len`` steps, as it is carried across steps online). Online, ``step`` advances
a batch of arenas by one observation each; ``reset_hidden`` clears the arenas whose episode ended.
``OnlineTrainer`` turns the per-step transition stream into episodes and trains on them.
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from persist_rt import checkpoint
from persist_rt.checkpoint import CheckpointError

CHECKPOINT_FORMAT = "persist.estimator"
# The log-variance is squashed into this range: the lower end keeps the NLL bounded when the error
# is tiny, the upper end keeps an untrained model from hiding behind a huge variance.
LOG_VAR_MIN = -14.0
LOG_VAR_MAX = 2.0


@dataclass(frozen=True)
class EstimatorConfig:
    obs_dim: int
    target_dim: int = 3  # energy, temperature, integrity
    hidden: int = 64  # GRU state size
    lr: float = 3e-3
    batch_size: int = 32  # trajectories per gradient step
    chunk_len: int = 50  # truncated-BPTT window (steps)
    grad_clip: float = 1.0  # max global gradient norm
    seed: int = 0
    device: str = "cpu"  # "cpu" | "cuda" | "auto"; online steps are tiny, so CPU is the default

    def __post_init__(self) -> None:
        for name in ("obs_dim", "target_dim", "hidden", "batch_size", "chunk_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"EstimatorConfig field '{name}' must be a positive integer, got {value!r}")
        for name in ("lr", "grad_clip"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"EstimatorConfig field '{name}' must be a finite number > 0, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"EstimatorConfig field 'seed' must be an integer >= 0, got {self.seed!r}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"EstimatorConfig field 'device' must be 'cpu', 'cuda' or 'auto', got {self.device!r}")

    def resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("EstimatorConfig field 'device' is 'cuda' but CUDA is not available")
        return torch.device(self.device)


@dataclass
class TrajectoryDataset:
    """Padded trajectories: ``obs`` (N, T, obs_dim), ``target`` (N, T, K), ``mask`` (N, T) valid steps.

    Row t pairs the observation at step t with the true internal variables at the same step.
    """

    obs: np.ndarray
    target: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        self.obs = np.asarray(self.obs, dtype=np.float32)
        self.target = np.asarray(self.target, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.obs.ndim != 3:
            raise ValueError(f"dataset 'obs' must be (N, T, obs_dim), got shape {self.obs.shape}")
        n, t = self.obs.shape[:2]
        if self.target.ndim != 3 or self.target.shape[:2] != (n, t):
            raise ValueError(f"dataset 'target' must be ({n}, {t}, K), got shape {self.target.shape}")
        if self.mask.shape != (n, t):
            raise ValueError(f"dataset 'mask' must be ({n}, {t}), got shape {self.mask.shape}")
        for name in ("obs", "target"):
            if not np.isfinite(getattr(self, name)[self.mask]).all():
                raise ValueError(f"dataset '{name}' contains NaN or inf at a valid step")

    def __len__(self) -> int:
        return self.obs.shape[0]

    @classmethod
    def from_episodes(cls, episodes: list[tuple[np.ndarray, np.ndarray]]) -> TrajectoryDataset:
        """Pad a list of (obs (T_i, obs_dim), target (T_i, K)) episodes to a common length."""
        if not episodes:
            raise ValueError("dataset needs at least one episode")
        length = max(len(o) for o, _ in episodes)
        obs_dim, k = episodes[0][0].shape[1], episodes[0][1].shape[1]
        obs = np.zeros((len(episodes), length, obs_dim), np.float32)
        target = np.zeros((len(episodes), length, k), np.float32)
        mask = np.zeros((len(episodes), length), bool)
        for i, (o, y) in enumerate(episodes):
            if len(o) != len(y):
                raise ValueError(f"episode {i}: {len(o)} observations but {len(y)} targets")
            obs[i, : len(o)], target[i, : len(y)], mask[i, : len(o)] = o, y, True
        return cls(obs, target, mask)

    def subset(self, rows: np.ndarray) -> TrajectoryDataset:
        valid = np.flatnonzero(self.mask[rows].any(axis=0))
        last = int(valid.max()) + 1 if valid.size else 1  # drop the all-padding tail
        return TrajectoryDataset(self.obs[rows, :last], self.target[rows, :last], self.mask[rows, :last])


class GRUEstimator(nn.Module):
    """obs_t -> Linear+ReLU -> GRU -> Linear -> (mean_t, log_var_t) for every step of a sequence."""

    def __init__(self, obs_dim: int, target_dim: int, hidden: int) -> None:
        super().__init__()
        # Fixed input standardisation, set once from the first training data (features differ in scale
        # by orders of magnitude: an arena-normalised distance vs a velocity).
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.encoder = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2 * target_dim)
        self.target_dim = target_dim

    def forward(self, obs: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """obs (B, T, obs_dim), h0 (1, B, hidden) -> mean (B, T, K), log_var (B, T, K), h_T."""
        out, h = self.gru(self.encoder((obs - self.obs_mean) / self.obs_std), h0)
        mean, raw = self.head(out).split(self.target_dim, dim=-1)
        log_var = LOG_VAR_MIN + (LOG_VAR_MAX - LOG_VAR_MIN) * torch.sigmoid(raw)
        return mean, log_var, h


def gaussian_nll(mean: Tensor, log_var: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean over valid steps and variables of 0.5 * (log var + (y - mean)^2 / var), constant dropped."""
    per_step = 0.5 * (log_var + (target - mean).pow(2) * torch.exp(-log_var))
    weights = mask.unsqueeze(-1).expand_as(per_step).float()
    return (per_step * weights).sum() / weights.sum().clamp_min(1.0)


class StateEstimator:
    def __init__(self, config: EstimatorConfig) -> None:
        self.config = cfg = config
        self.device = cfg.resolve_device()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model = GRUEstimator(cfg.obs_dim, cfg.target_dim, cfg.hidden).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.rng = np.random.default_rng(cfg.seed)  # minibatch order
        self.num_updates = 0

    # --- training ---------------------------------------------------------------------------

    @property
    def normalised(self) -> bool:
        return bool((self.model.obs_std != 1).any() or (self.model.obs_mean != 0).any())

    def set_normalisation(self, obs: np.ndarray) -> None:
        """Standardise inputs with the per-feature mean and std of ``obs`` (rows = steps)."""
        obs = np.asarray(obs, dtype=np.float32).reshape(-1, self.config.obs_dim)
        with torch.no_grad():
            self.model.obs_mean.copy_(torch.from_numpy(obs.mean(axis=0)))
            # constant features get std 1 so that they pass through instead of exploding
            std = obs.std(axis=0)
            self.model.obs_std.copy_(torch.from_numpy(np.where(std > 1e-6, std, 1.0).astype(np.float32)))

    def _tensors(self, data: TrajectoryDataset) -> tuple[Tensor, Tensor, Tensor]:
        if data.obs.shape[2] != self.config.obs_dim:
            raise ValueError(f"dataset 'obs' has {data.obs.shape[2]} features, expected {self.config.obs_dim}")
        if data.target.shape[2] != self.config.target_dim:
            raise ValueError(f"dataset 'target' has {data.target.shape[2]} values, expected {self.config.target_dim}")
        return tuple(torch.from_numpy(a).to(self.device) for a in (data.obs, data.target, data.mask))  # type: ignore[return-value]

    def train_batch(self, batch: TrajectoryDataset) -> float:
        """Truncated BPTT over one batch of trajectories, one optimizer step per chunk; mean NLL."""
        obs, target, mask = self._tensors(batch)
        self.model.train()
        h, losses = None, []
        for t0 in range(0, obs.shape[1], self.config.chunk_len):
            sl = slice(t0, t0 + self.config.chunk_len)
            if not mask[:, sl].any():
                break
            mean, log_var, h = self.model(obs[:, sl], h)
            loss = gaussian_nll(mean, log_var, target[:, sl], mask[:, sl])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            self.num_updates += 1
            h = h.detach()
            losses.append(loss.item())
        return float(np.mean(losses)) if losses else float("nan")

    def fit(self, dataset: TrajectoryDataset, epochs: int) -> list[float]:
        """``epochs`` shuffled passes over ``dataset``; returns the mean training NLL of each epoch."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        if not self.normalised:
            self._tensors(dataset)  # shape checks first
            self.set_normalisation(dataset.obs[dataset.mask])
        history = []
        for epoch in range(epochs):
            # Cosine decay to lr/10 over the fit: the last epochs settle instead of bouncing.
            lr = self.config.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * epoch / epochs)))
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            order = self.rng.permutation(len(dataset))
            batches = [order[i : i + self.config.batch_size] for i in range(0, len(order), self.config.batch_size)]
            history.append(float(np.mean([self.train_batch(dataset.subset(rows)) for rows in batches])))
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr
        return history

    @torch.no_grad()
    def predict(self, dataset: TrajectoryDataset) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std (N, T, K) over whole trajectories, hidden state from zero at t = 0."""
        obs, _, _ = self._tensors(dataset)
        self.model.eval()
        mean, log_var, _ = self.model(obs)
        return mean.cpu().numpy(), torch.exp(0.5 * log_var).cpu().numpy()

    def evaluate(self, dataset: TrajectoryDataset) -> dict[str, Any]:
        """Held-out figures over valid steps: RMSE (all and per variable), NLL, 2-sigma coverage."""
        mean, std = self.predict(dataset)
        m = dataset.mask
        err = (mean - dataset.target)[m]  # (steps, K)
        s = std[m]
        return {
            "rmse": float(np.sqrt(np.mean(err**2))),
            "rmse_per_var": np.sqrt(np.mean(err**2, axis=0)).tolist(),
            "nll": float(np.mean(0.5 * (np.log(s**2) + (err / s) ** 2))),
            "coverage_2std": float(np.mean(np.abs(err) <= 2 * s)),
            "mean_std": float(np.mean(s)),
        }

    # --- online use -------------------------------------------------------------------------

    def initial_hidden(self, batch: int) -> np.ndarray:
        return np.zeros((1, batch, self.config.hidden), np.float32)

    @staticmethod
    def reset_hidden(hidden: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Zero the hidden state of arenas whose episode ended (the next observation starts afresh)."""
        out = hidden.copy()
        out[:, np.asarray(done, dtype=bool)] = 0.0
        return out

    @torch.no_grad()
    def step(self, obs: np.ndarray, hidden: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One observation per arena: obs (B, obs_dim), hidden (1, B, hidden) or None -> mean, std, hidden."""
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.config.obs_dim:
            raise ValueError(f"obs has shape {obs.shape}, expected (batch, {self.config.obs_dim})")
        if hidden is None:
            hidden = self.initial_hidden(obs.shape[0])
        if hidden.shape != (1, obs.shape[0], self.config.hidden):
            raise ValueError(f"hidden has shape {hidden.shape}, expected (1, {obs.shape[0]}, {self.config.hidden})")
        self.model.eval()
        x = torch.from_numpy(obs).to(self.device).unsqueeze(1)
        mean, log_var, h = self.model(x, torch.from_numpy(np.ascontiguousarray(hidden)).to(self.device))
        return (
            mean[:, 0].cpu().numpy(),
            torch.exp(0.5 * log_var[:, 0]).cpu().numpy(),
            h.cpu().numpy(),
        )

    # --- persistence ------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Weights, input standardisation and config (atomic; the optimizer restarts, the model stays warm)."""
        tensors = {k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()}
        meta = {"format": CHECKPOINT_FORMAT, "config": asdict(self.config), "num_updates": self.num_updates}
        return checkpoint.save(path, tensors, meta)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Load weights saved by ``save``; refuses another architecture, naming the field or tensor."""
        source = str(path)
        tensors, meta = checkpoint.load(path)
        checkpoint.check_meta(meta, source, format=CHECKPOINT_FORMAT)
        saved = meta.get("config", {})
        for name in ("obs_dim", "target_dim", "hidden"):
            mine, theirs = getattr(self.config, name), saved.get(name)
            if theirs != mine:
                raise CheckpointError(f"{source}: field 'config.{name}' is {theirs!r}, expected {mine!r}")
        expected = {k: (tuple(v.shape), "float32") for k, v in self.model.state_dict().items()}
        checkpoint.check_tensors(tensors, expected, source)
        self.model.load_state_dict({k: torch.from_numpy(v.copy()).to(self.device) for k, v in tensors.items()})
        self.num_updates = int(meta.get("num_updates", 0))


class OnlineTrainer:
    """Builds episodes from the per-step stream of (obs, truth, episode ended) and trains on them.

    Episodes longer than ``max_len`` are cut (the remainder starts a new training sequence from a
    zero hidden state). At most ``capacity_steps`` steps of finished episodes are kept, oldest dropped.
    """

    def __init__(self, estimator: StateEstimator, max_len: int = 1000, capacity_steps: int = 200_000) -> None:
        for name, value in (("max_len", max_len), ("capacity_steps", capacity_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"OnlineTrainer '{name}' must be a positive integer, got {value!r}")
        self.estimator, self.max_len, self.capacity_steps = estimator, max_len, capacity_steps
        self.episodes: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self.stored_steps = 0
        self._open: list[tuple[list[np.ndarray], list[np.ndarray]]] = []

    def add(self, obs: np.ndarray, truth: np.ndarray, episode_ended: np.ndarray) -> None:
        """One step of N arenas: obs (N, obs_dim), true internal variables at that obs (N, K), and
        whether the episode ended with this step (terminated or truncated)."""
        cfg = self.estimator.config
        obs, truth = np.asarray(obs, np.float32), np.asarray(truth, np.float32)
        ended = np.asarray(episode_ended, dtype=bool)
        n = obs.shape[0] if obs.ndim == 2 else -1
        if obs.shape != (n, cfg.obs_dim):
            raise ValueError(f"obs has shape {obs.shape}, expected (arenas, {cfg.obs_dim})")
        if truth.shape != (n, cfg.target_dim):
            raise ValueError(f"truth has shape {truth.shape}, expected ({n}, {cfg.target_dim})")
        if ended.shape != (n,):
            raise ValueError(f"episode_ended has shape {ended.shape}, expected ({n},)")
        if not (np.isfinite(obs).all() and np.isfinite(truth).all()):
            raise ValueError("obs or truth contains NaN or inf")
        if not self._open:
            self._open = [([], []) for _ in range(n)]
        if n != len(self._open):
            raise ValueError(f"obs has {n} arenas, expected {len(self._open)} as before")
        for i in range(n):
            self._open[i][0].append(obs[i])
            self._open[i][1].append(truth[i])
            if ended[i] or len(self._open[i][0]) >= self.max_len:
                self._close(i)

    def _close(self, i: int) -> None:
        o, y = self._open[i]
        self.episodes.append((np.stack(o), np.stack(y)))
        self.stored_steps += len(o)
        self._open[i] = ([], [])
        while self.stored_steps > self.capacity_steps and len(self.episodes) > 1:
            self.stored_steps -= len(self.episodes.popleft()[0])

    def train(self) -> float | None:
        """One truncated-BPTT pass over a random batch of stored episodes; None until one exists."""
        if not self.episodes:
            return None
        est = self.estimator
        if not est.normalised:
            est.set_normalisation(np.concatenate([o for o, _ in self.episodes]))
        pick = est.rng.choice(len(self.episodes), size=min(est.config.batch_size, len(self.episodes)), replace=False)
        return est.train_batch(TrajectoryDataset.from_episodes([self.episodes[int(i)] for i in pick]))
