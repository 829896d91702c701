"""Bounded replay buffer on the learner's device: a ring of preallocated torch tensors.

``done`` means *terminated* (death, no bootstrap); a truncated episode (the step cap) must be added
with ``done = False`` so its value keeps bootstrapping. Once full, the oldest rows are overwritten.

``save``/``load`` put the filled rows and the ring position in one checkpoint file (safetensors + JSON,
atomic, digest checked, the previous file kept), so a learner killed with SIGKILL comes back with the
buffer of its last checkpoint. A buffer of another capacity takes the newest rows that fit, oldest first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from persist_rt import checkpoint
from persist_rt.checkpoint import CheckpointError

REPLAY_FORMAT = "persist.replay"
REPLAY_FORMAT_VERSION = 1


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

    # --- at rest ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the filled rows and the ring position atomically, keeping the previous file."""
        tensors = {name: column[: self.size].cpu().numpy() for name, column in self._columns.items()}
        meta = {"format": REPLAY_FORMAT, "format_version": REPLAY_FORMAT_VERSION, "capacity": self.capacity,
                "obs_dim": self.obs_dim, "act_dim": self.act_dim, "next": self._next, "size": self.size,
                "total_added": self.total_added}
        return checkpoint.save(path, tensors, meta, keep_previous=True)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Replace the contents with a file written by ``save``; CheckpointError naming the field otherwise."""
        source = str(path)
        tensors, meta = checkpoint.load(path)
        checkpoint.check_meta(meta, source, format=REPLAY_FORMAT, format_version=REPLAY_FORMAT_VERSION,
                              obs_dim=self.obs_dim, act_dim=self.act_dim)
        ints = {}
        for key in ("capacity", "next", "size", "total_added"):
            value = meta.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CheckpointError(f"{source}: field '{key}' must be an integer >= 0, got {value!r}")
            ints[key] = value
        size, saved_capacity = ints["size"], ints["capacity"]
        if size > saved_capacity or (size and ints["next"] >= saved_capacity):
            raise CheckpointError(f"{source}: field 'size' or 'next' lies outside capacity {saved_capacity}")
        missing = sorted(set(self._columns) - set(tensors))
        if missing:
            raise CheckpointError(f"{source}: tensor '{missing[0]}' is missing")
        try:
            rows = self._checked({name: tensors[name] for name in self._columns})
        except ValueError as exc:
            raise CheckpointError(f"{source}: {exc}") from None
        if rows["obs"].shape[0] != size:
            raise CheckpointError(f"{source}: field 'size' is {size}, the tensors hold {rows['obs'].shape[0]} rows")
        self._next, self.size = 0, 0
        if saved_capacity == self.capacity:  # the very same ring: sampling continues over the same rows
            for name, column in self._columns.items():
                column[:size] = torch.from_numpy(rows[name]).to(self.device)
            self._next, self.size = ints["next"] % self.capacity, size
        else:  # oldest first, so the newest rows are the ones a smaller ring keeps
            start = ints["next"] if size == saved_capacity else 0
            self.add_batch(*(np.roll(rows[name], -start, axis=0)[-self.capacity :] for name in self._columns))
        self.total_added = ints["total_added"]
