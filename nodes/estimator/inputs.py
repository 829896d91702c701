"""What a policy acting on a belief sees: the observation with the estimate's mean and std appended.

One function for the agent (the estimate of the step it acts on) and the estimator's replay stream (the same
estimate for ``obs``, the next step's for ``next_obs``), so actor and learner always get the same input.
"""

from __future__ import annotations

import numpy as np


def with_belief(obs: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(N, obs_dim + 2 H) float32: the observation rows, then the belief's mean (N, H) and std (N, H)."""
    return np.concatenate([obs, mean, std], axis=1, dtype=np.float32)
