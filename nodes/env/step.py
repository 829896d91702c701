"""The result of one step of N arenas: one type for every simulator (GridLife, Gymnasium) and the env node."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class StepResult:
    """One executed step of N arenas. Every field describes the transition (s, a) -> s' before any auto-reset,
    except ``reset_obs``, the observation to act on next.

    obs: (N, obs_dim) float32, the observation the actions were chosen on (before the step).
    next_obs: (N, obs_dim) float32, the observation of s' (the terminal one for arenas that ended).
    reset_obs: (N, obs_dim) float32, the observation after auto-reset: ``next_obs`` except where an arena ended.
    task_reward: (N,) the task's own reward (GridLife: tokens collected * token_reward; Gymnasium: the env's).
    homeo_reward: (N,) drive reduction D(h) - D(h') (zeros for kinds without a homeostat).
    reward: (N,) what the learner optimises, composed by ``nodes.env.reward.RewardTerms``; the simulators
        leave it None.
    terminated: (N,) bool, death (or the env's own termination).
    truncated: (N,) bool, the episode cap was reached alive.
    violation: (N,) bool, s' breaks a viability constraint.
    margins: name -> (N,) margins of s', >= 0 when viable.
    episode_steps: (N,) int64, steps of the episode so far, counting this one.
    tokens: (N,) int64, tokens collected in the step (kinds that have tokens, else None).
    internal: (N, H) true internal state h before the step (kinds that have one, else None).
    next_internal: (N, H) true internal state h' after the step.
    next_positions: (N, 2) positions p' after the step, in metres (GridLife).

    The simulators give rewards and internal states in float64; the env node's replay stream sends float32.
    """

    obs: np.ndarray
    next_obs: np.ndarray
    reset_obs: np.ndarray
    task_reward: np.ndarray
    homeo_reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    violation: np.ndarray
    margins: dict[str, np.ndarray]
    episode_steps: np.ndarray
    reward: np.ndarray | None = None
    tokens: np.ndarray | None = None
    internal: np.ndarray | None = None
    next_internal: np.ndarray | None = None
    next_positions: np.ndarray | None = None

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated
