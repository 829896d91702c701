"""Surprise under a latent world model, with both signs.

``surprise_minimise``: r = -e / sigma_e (predictable, persistent states; SMiRL, free-energy accounts).
``surprise_seek``: r = +e / sigma_e (curiosity). e is the world model's prediction error, sigma_e its running std.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nodes.intrinsic.base import IntrinsicReward
from nodes.intrinsic.world_model import LatentWorldModel


class Surprise(IntrinsicReward):
    name = "surprise_seek"

    def __init__(self, obs_dim: int, act_dim: int, lr: float = 1e-3, latent: int = 16,
                 hidden: tuple[int, ...] = (64,), minimise: bool = False) -> None:
        super().__init__()
        self.sign = -1.0 if minimise else 1.0
        self.name = "surprise_minimise" if minimise else "surprise_seek"
        self.model = LatentWorldModel(obs_dim, act_dim, latent, hidden)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)

    def losses(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> dict[str, Tensor]:
        return self.model.losses(obs, action, next_obs)

    def raw_reward(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
        return self.model.prediction_error(obs, action, next_obs)
