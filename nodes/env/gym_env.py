"""GridLife as a single-arena `gymnasium.Env`, registered as `persist/GridLife-v0` on import."""

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig
from nodes.env.homeostat import total_reward

ENV_ID = "persist/GridLife-v0"


class GridLifeEnv(gymnasium.Env):
    """One GridLife arena.  reward = r_task + lambda_homeo * r_homeo; both parts are also in `info`.

    Keyword arguments other than `config`, `lambda_homeo` and `render_mode` are GridLifeConfig fields.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        config: GridLifeConfig | None = None,
        lambda_homeo: float = 1.0,
        render_mode: str | None = None,
        **params: Any,
    ) -> None:
        if config is not None and params:
            raise ValueError(f"pass either config or GridLife parameters, not both (got {sorted(params)})")
        if render_mode is not None:
            raise ValueError(f"render_mode: GridLife has no renderer, got {render_mode!r}")
        if isinstance(lambda_homeo, bool) or not isinstance(lambda_homeo, int | float) or not np.isfinite(lambda_homeo):
            raise ValueError(f"lambda_homeo: must be finite, got {lambda_homeo!r}")
        self.config = config if config is not None else GridLifeConfig.from_params(params)
        self.lambda_homeo = float(lambda_homeo)
        self.render_mode = render_mode
        self._batch = GridLifeBatch(self.config, num_envs=1)
        low, high = self._batch.obs_low, self._batch.obs_high
        self.observation_space = spaces.Box(low=low, high=high, dtype=np.float32)
        self.action_space = spaces.Box(low=-1.0, high=1.0, shape=(2,), dtype=np.float32)

    @property
    def batch(self) -> GridLifeBatch:
        """The underlying one-arena simulator (state, layout and dynamics for shields)."""
        return self._batch

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # the arena's own generator is reseeded from the env's, so reset() without a seed stays reproducible
        obs = self._batch.reset(seed=int(self.np_random.integers(2**63 - 1)))
        return obs[0], self._info_now()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        result = self._batch.step(np.asarray(action, dtype=np.float32).reshape(1, 2))
        reward = total_reward(result.task_reward, result.homeo_reward, 0.0, self.lambda_homeo, 0.0)
        info = {
            "task_reward": float(result.task_reward[0]),
            "homeo_reward": float(result.homeo_reward[0]),
            "violation": bool(result.violation[0]),
            "internal": result.internal[0].copy(),
            "position": result.positions[0].copy(),
            "margins": {name: float(value[0]) for name, value in result.margins.items()},
        }
        # gymnasium semantics: the terminal observation is returned; the caller resets
        return (
            result.next_obs[0],
            float(reward[0]),
            bool(result.terminated[0]),
            bool(result.truncated[0]),
            info,
        )

    def _info_now(self) -> dict[str, Any]:
        margins = self._batch.margins()
        return {
            "internal": self._batch.internal[0].copy(),
            "position": self._batch.positions[0].copy(),
            "margins": {name: float(value[0]) for name, value in margins.items()},
        }


if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="nodes.env.gym_env:GridLifeEnv", max_episode_steps=None)
