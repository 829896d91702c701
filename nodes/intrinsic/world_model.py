"""Latent world model: encoder, latent transition and decoder, trained on reconstruction and latent prediction.

Surprise is its prediction error in observation space, ``|decode(T(encode(s), a)) - s'|^2``; empowerment rolls
it out to score k-step action sequences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nodes.sac.networks import mlp


class LatentWorldModel(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, latent: int = 16, hidden: tuple[int, ...] = (64,)) -> None:
        super().__init__()
        self.encoder = mlp(obs_dim, hidden, latent, "elu")
        self.transition = mlp(latent + act_dim, hidden, latent, "elu")
        self.decoder = mlp(latent, hidden, obs_dim, "elu")

    def step(self, z: Tensor, action: Tensor) -> Tensor:
        """Next latent; residual, so an untrained model predicts 'nothing changes'."""
        return z + self.transition(torch.cat([z, action], dim=-1))

    def losses(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> dict[str, Tensor]:
        z = self.encoder(obs)
        z_next_pred = self.step(z, action)
        z_next = self.encoder(next_obs).detach()
        return {
            "reconstruction": F.mse_loss(self.decoder(z), obs),
            "latent_prediction": F.mse_loss(z_next_pred, z_next),
            "prediction": F.mse_loss(self.decoder(z_next_pred), next_obs),
        }

    def prediction_error(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
        """Per-transition squared error of the predicted next observation, mean over dimensions: (B,)."""
        return (self.decoder(self.step(self.encoder(obs), action)) - next_obs).pow(2).mean(-1)
