"""Bounded replay buffer on the learner's device: a ring of preallocated torch tensors.

``done`` means *terminated* (death, no bootstrap); a truncated episode (the step cap) must be added
with ``done = False`` so its value keeps bootstrapping. Once full, the oldest rows are overwritten.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor


class ReplayBatch(NamedTuple):
    obs: Tensor  # (B, obs_dim) float32
    action: Tensor  # (B, act_dim) float32
    reward: Tensor  # (B,) float32
    next_obs: Tensor  # (B, obs_dim) float32
    done: Tensor  # (B,) float32, 1.0 where the episode terminated


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: str | torch.device = "cpu") -> None:
        for name, value in (("capacity", capacity), ("obs_dim", obs_dim), ("act_dim", act_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"replay buffer '{name}' must be a positive integer, got {value!r}")
        self.capacity, self.obs_dim, self.act_dim = capacity, obs_dim, act_dim
        self.device = torch.device(device)
        self._columns: dict[str, Tensor] = {
            name: torch.zeros((capacity, *tail), dtype=torch.float32, device=self.device)
            for name, tail in (
                ("obs", (obs_dim,)),
                ("action", (act_dim,)),
                ("reward", ()),
                ("next_obs", (obs_dim,)),
                ("done", ()),
            )
        }
        self._next = 0  # row the next transition goes to
        self.size = 0
        self.total_added = 0

    def __len__(self) -> int:
        return self.size

    def _checked(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = np.shape(arrays["obs"])[0] if np.ndim(arrays["obs"]) else 0
        tails = {
            "obs": (self.obs_dim,),
            "action": (self.act_dim,),
            "reward": (),
            "next_obs": (self.obs_dim,),
            "done": (),
        }
        out = {}
        for name, value in arrays.items():
            a = np.asarray(value, dtype=np.float32)
            if a.shape != (n, *tails[name]):
                raise ValueError(f"replay '{name}' has shape {a.shape}, expected {(n, *tails[name])}")
            if not np.isfinite(a).all():
                raise ValueError(f"replay '{name}' contains NaN or inf")
            out[name] = a
        return out

    def add_batch(
        self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray, done: np.ndarray
    ) -> None:
        """Append N transitions (row i of every array is one transition); validated before any write."""
        arrays = self._checked({"obs": obs, "action": action, "reward": reward, "next_obs": next_obs, "done": done})
        n = arrays["obs"].shape[0]
        if n == 0:
            return
        if n > self.capacity:  # only the newest `capacity` rows would survive anyway
            arrays = {k: v[-self.capacity :] for k, v in arrays.items()}
            self._next = (self._next + n - self.capacity) % self.capacity
            self.total_added += n - self.capacity
            n = self.capacity
        first = min(n, self.capacity - self._next)  # rows before the ring wraps
        for name, column in self._columns.items():
            array = arrays[name]
            # arrays decoded off the wire are read-only views; torch wants writable memory
            rows = torch.from_numpy(array if array.flags.writeable else array.copy()).to(self.device, non_blocking=True)
            column[self._next : self._next + first] = rows[:first]
            if first < n:
                column[: n - first] = rows[first:]
        self._next = (self._next + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self.total_added += n

    def sample(self, batch_size: int, generator: torch.Generator) -> ReplayBatch:
        """Uniform sample with replacement; ``generator`` makes it reproducible."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if self.size == 0:
            raise ValueError("replay buffer is empty: add transitions before sampling")
        idx = torch.randint(0, self.size, (batch_size,), generator=generator, device=generator.device)
        idx = idx.to(self.device)
        return ReplayBatch(**{name: column[idx] for name, column in self._columns.items()})
