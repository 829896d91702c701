"""GridLife as a single-arena `gymnasium.Env`, registered as `persist/GridLife-v0` on import."""

from dataclasses import fields
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig
from nodes.env.reward import RewardTerms

ENV_ID = "persist/GridLife-v0"
# the reward's terms this env takes as keyword arguments (it has no shield, so no intervention penalty)
REWARD_KWARGS = tuple(f.name for f in fields(RewardTerms) if f.name != "intervention_penalty")


class GridLifeEnv(gymnasium.Env):
    """One GridLife arena. The reward is the env node's (nodes/env/reward.py; by default r_task + r_homeo);
    both parts are also in `info`.

    Keyword arguments `lambda_task`, `lambda_homeo`, `death_penalty`, `homeo_discount` and `token_shaping` weigh
    the reward's terms; the others, except `config` and `render_mode`, are GridLifeConfig fields.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        config: GridLifeConfig | None = None,
        render_mode: str | None = None,
        **params: Any,
    ) -> None:
        self.reward_terms = RewardTerms(**{name: params.pop(name) for name in REWARD_KWARGS if name in params})
        if config is not None and params:
            raise ValueError(f"pass either config or GridLife parameters, not both (got {sorted(params)})")
        if render_mode is not None:
            raise ValueError(f"render_mode: GridLife has no renderer, got {render_mode!r}")
        self.config = config if config is not None else GridLifeConfig.from_params(params)
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
        token_dist = self._batch.obs_names.index("token_dist"), self.config.arena_size
        reward = self.reward_terms.compose(result, self._batch.homeostat, token_dist, dtype=np.float64)
        info = {
            "task_reward": float(result.task_reward[0]),
            "homeo_reward": float(result.homeo_reward[0]),
            "violation": bool(result.violation[0]),
            "internal": result.next_internal[0].copy(),
            "position": result.next_positions[0].copy(),
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
