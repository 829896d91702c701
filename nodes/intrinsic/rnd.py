"""Random network distillation (Burda et al. 2018): reward = |f_pred(s') - f_target(s')|^2 on normalised s'.

The target is a fixed random network; the predictor learns it on visited states, so its error stays high where
the agent has not been. Observations are normalised by running moments and clipped to [-5, 5]; the reward is
divided by its running std (base class), as in the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nodes.intrinsic.base import IntrinsicReward, RunningMoments
from nodes.sac.networks import mlp


class RND(IntrinsicReward):
    name = "rnd"

    def __init__(self, obs_dim: int, act_dim: int, lr: float = 1e-3, features: int = 32,
                 hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.obs_moments = RunningMoments((obs_dim,))
        self.target = mlp(obs_dim, hidden, features, "relu").requires_grad_(False)
        self.predictor = mlp(obs_dim, hidden, features, "relu")
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=lr)

    def _normalised(self, obs: Tensor) -> Tensor:
        return ((obs - self.obs_moments.mean) / self.obs_moments.std).clamp(-5.0, 5.0)

    def _error(self, next_obs: Tensor) -> Tensor:
        x = self._normalised(next_obs)
        return (self.predictor(x) - self.target(x)).pow(2).mean(-1)

    def losses(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> dict[str, Tensor]:
        self.obs_moments.update(next_obs)
        return {"distillation": self._error(next_obs).mean()}

    def raw_reward(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
        return self._error(next_obs)
