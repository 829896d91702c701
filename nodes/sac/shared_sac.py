"""SharedSAC: one SAC per agent type, its parameters shared by every agent of that type (multi-agent GridLife's
`agent_types`).

Each agent's observation is extended by its role embedding, the one-hot code of its index among the agents of
its type, so agents that share parameters can still act apart. Every type keeps its own SAC (nodes/sac/sac.py:
updates, temperature, checkpoints as for SAC) and its own replay buffer of the type's transitions, one row per
agent and step. Not here yet: a joint replay (ReplayMA) and a centralised critic.

    shared = SharedSAC(obs_dim, 2, type_index=cfg.agent_type_index, config=SACConfig(...))
    actions = shared.act(obs, deterministic=False, rng=rng)        # obs (N, A, obs_dim) -> (N, A, 2)
    shared.add(obs, actions, reward, next_obs, terminated)         # (N, A, ...) each
    stats = shared.update()                                        # one update per type whose replay is ready
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nodes.sac.inference import NumpyActor
from nodes.sac.replay import ReplayBuffer
from nodes.sac.roles import role_embedding, role_one_hot
from nodes.sac.sac import SAC, SACConfig, UpdateStats

__all__ = ["SharedSAC", "role_embedding"]


class SharedSAC:
    def __init__(self, obs_dim: int, act_dim: int, type_index: Sequence[int], config: SACConfig | None = None,
                 names: Sequence[str] | None = None) -> None:  # fmt: skip
        t = np.asarray(type_index)
        if t.ndim != 1 or len(t) < 1 or t.dtype.kind not in "iu" or t.min() < 0:
            raise ValueError(f"type_index: expected (A,) non-negative integers, got {type_index!r}")
        if set(np.unique(t).tolist()) != set(range(int(t.max()) + 1)):
            raise ValueError(f"type_index: every type from 0 to {int(t.max())} needs an agent, got {t.tolist()}")
        self.type_index, self.obs_dim, self.act_dim = t.astype(np.int64), obs_dim, act_dim
        self.roles, _ = role_embedding(self.type_index)
        self.counts = np.bincount(self.type_index)
        cfg = config or SACConfig()
        self.names = list(names) if names is not None else [f"type_{k}" for k in range(len(self.counts))]
        if len(self.names) != len(self.counts):
            raise ValueError(f"names: expected {len(self.counts)}, got {len(self.names)}")
        # each type its own seed, so that two types of the same size do not start as the same network
        self.learners = [SAC(obs_dim + int(c), act_dim, dataclasses.replace(cfg, seed=cfg.seed + k))
                         for k, c in enumerate(self.counts)]  # fmt: skip
        self.replays = [ReplayBuffer(cfg.replay_capacity, obs_dim + int(c), act_dim, sac.device)
                        for c, sac in zip(self.counts, self.learners, strict=True)]  # fmt: skip

    def embed(self, obs: np.ndarray, k: int) -> np.ndarray:
        """Type k's rows (N * count_k, obs_dim + count_k): each agent's observation, then its role's one-hot."""
        o = np.asarray(obs, dtype=np.float32)
        if o.ndim != 3 or o.shape[1:] != (len(self.type_index), self.obs_dim):
            raise ValueError(f"obs: expected shape (N, {len(self.type_index)}, {self.obs_dim}), got {o.shape}")
        members = np.flatnonzero(self.type_index == k)
        one_hot = role_one_hot(self.type_index)[members, : int(self.counts[k])]
        rows = np.concatenate([o[:, members], np.broadcast_to(one_hot, (o.shape[0], *one_hot.shape))], axis=-1)
        return rows.reshape(-1, rows.shape[-1])

    def act(self, obs: np.ndarray, deterministic: bool, rng: np.random.Generator | None = None) -> np.ndarray:
        out = np.zeros((np.shape(obs)[0], len(self.type_index), self.act_dim), dtype=np.float32)
        for k, sac in enumerate(self.learners):
            members = np.flatnonzero(self.type_index == k)
            actor = NumpyActor(sac.policy())
            out[:, members] = actor.act(self.embed(obs, k), deterministic, rng).reshape(len(out), len(members), -1)
        return out

    def add(self, obs: np.ndarray, actions: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
            done: np.ndarray) -> None:  # fmt: skip
        a = np.asarray(actions, dtype=np.float32)
        n, agents = np.shape(obs)[0], len(self.type_index)
        for name, value, shape in (("actions", a, (n, agents, self.act_dim)), ("reward", reward, (n, agents)),
                                   ("done", done, (n, agents))):  # fmt: skip
            if np.shape(value) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {np.shape(value)}")
        for k, replay in enumerate(self.replays):
            members = np.flatnonzero(self.type_index == k)
            replay.add_batch(self.embed(obs, k), a[:, members].reshape(-1, self.act_dim),
                             np.asarray(reward, np.float32)[:, members].reshape(-1), self.embed(next_obs, k),
                             np.asarray(done, np.float32)[:, members].reshape(-1))  # fmt: skip

    def update(self) -> dict[str, UpdateStats]:
        """One gradient step for each type whose replay holds `learning_starts` rows (at least a batch)."""
        stats = {}
        for name, sac, replay in zip(self.names, self.learners, self.replays, strict=True):
            if replay.size >= max(sac.config.learning_starts, sac.config.batch_size):
                stats[name] = sac.update(replay.sample(sac.config.batch_size, sac.generator))
        return stats

    def checkpoint(self, folder: str | Path) -> list[Path]:
        """One SAC checkpoint per type, `shared_sac.<name>.safetensors`, with its roles in the metadata."""
        return [sac.checkpoint(Path(folder) / f"shared_sac.{name}.safetensors",
                               extra={"type": name, "agents": int(c)})
                for name, sac, c in zip(self.names, self.learners, self.counts, strict=True)]  # fmt: skip

    def resume(self, folder: str | Path) -> None:
        for name, sac in zip(self.names, self.learners, strict=True):
            sac.resume(Path(folder) / f"shared_sac.{name}.safetensors")
