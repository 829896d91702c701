"""Two small Gymnasium environments whose safe sets are known exactly, registered on import; the shield's
descriptions of them are in `nodes/env/point_safety.py`.

- `persist/PointMass-v0` (keyword `dim`, default 2): a point x in R^dim moved by its velocity command,
  x' = x + DT u with u in [-1, 1]^dim; safe set |x_i| <= 1 for every i; reward -|x - goal|; info["cost"] is 1
  outside the safe set, else 0 (the Safety-Gymnasium convention).
- `persist/PlanarDoubleIntegrator-v0`: position p and velocity v in R^2 pushed by an acceleration a in [-1, 1]^2,
  v' = v + DT a, p' = p + DT v'; the constraint |p_i| <= 1; reward -|p - goal|. Not every state inside the box
  is safe (one moving fast at a wall cannot stop in time): its largest control-invariant set is known in closed
  form, which the descriptions use.

The state is kept as the float32 observation, so a description computed from the observation sees exactly the
state the env steps from.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

DT = 0.1
EPISODE_STEPS = 200


class PointMass(gymnasium.Env):
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, dim: int = 2) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: must be an integer >= 1, got {dim!r}")
        self.dim = dim
        self.observation_space = spaces.Box(-2.0, 2.0, (2 * dim,), np.float32)  # x, goal
        self.action_space = spaces.Box(-1.0, 1.0, (dim,), np.float32)
        self.x = np.zeros(dim, np.float32)
        self.goal = np.zeros(dim, np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-0.5, 0.5, self.dim).astype(np.float32)
        self.goal = self.np_random.uniform(-0.9, 0.9, self.dim).astype(np.float32)
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        u = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self.x = (self.x + DT * u).astype(np.float32)
        cost = float(np.abs(self.x).max() > 1.0)  # Safety-Gymnasium's convention (nodes.env.constraints:info_cost)
        return self._obs(), -float(np.linalg.norm(self.x - self.goal)), False, False, {"cost": cost}

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.x, self.goal])


class PlanarDoubleIntegrator(gymnasium.Env):
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (6,), np.float32)  # p, v, goal
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.state = np.zeros(4, np.float32)
        self.goal = np.zeros(2, np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        p = self.np_random.uniform(-0.5, 0.5, 2)
        v = self.np_random.uniform(-0.3, 0.3, 2)
        self.state = np.concatenate([p, v]).astype(np.float32)
        self.goal = self.np_random.uniform(-0.9, 0.9, 2).astype(np.float32)
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        v = self.state[2:].astype(np.float64) + DT * a
        p = self.state[:2].astype(np.float64) + DT * v
        self.state = np.concatenate([p, v]).astype(np.float32)
        return self._obs(), -float(np.linalg.norm(self.state[:2] - self.goal)), False, False, {}

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.state, self.goal])


def point_margin(obs: np.ndarray, info: dict[str, Any]) -> dict[str, float]:
    """PointMass's constraint (spec `nodes.env.point_envs:point_margin`): every |x_i| <= 1."""
    return {"box": 1.0 - float(np.abs(np.asarray(obs[: obs.size // 2], np.float64)).max())}


def planar_margin(obs: np.ndarray, info: dict[str, Any]) -> dict[str, float]:
    """PlanarDoubleIntegrator's constraint (spec `nodes.env.point_envs:planar_margin`): every |p_i| <= 1."""
    return {"box": 1.0 - float(np.abs(np.asarray(obs[:2], np.float64)).max())}


for _id, _entry in (("persist/PointMass-v0", "PointMass"), ("persist/PlanarDoubleIntegrator-v0",
                                                             "PlanarDoubleIntegrator")):
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point=f"nodes.env.point_envs:{_entry}", max_episode_steps=EPISODE_STEPS)
