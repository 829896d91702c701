"""Role embeddings of agents that share parameters (torch-free: the env node appends them to its observations).

An agent's role is its index among the agents of its type; its embedding is the one-hot code of that role, so
agents that share one set of parameters can still act apart (SharedSAC, nodes/sac/shared_sac.py; the multi-agent
env node, nodes/env/multi_node.py, for one shared type).
"""

from __future__ import annotations

import numpy as np


def role_embedding(type_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per agent: its index among the agents of its type (role), and the number of agents of its type."""
    type_index = np.asarray(type_index)
    roles = np.zeros(len(type_index), dtype=np.int64)
    counts = np.bincount(type_index)
    for t in range(len(counts)):
        roles[type_index == t] = np.arange(counts[t])
    return roles, counts[type_index]


def role_one_hot(type_index: np.ndarray) -> np.ndarray:
    """(A, largest type's count) float32: row j is the one-hot code of agent j's role (type k's agents use the
    first count_k columns)."""
    roles, counts = role_embedding(type_index)
    return np.eye(int(counts.max()), dtype=np.float32)[roles]
