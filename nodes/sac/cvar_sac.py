"""CVaR-SAC: SAC with a distributional critic (quantile regression, twin) and an actor that maximises CVaR_alpha.

Each critic outputs N quantiles of the return Z(s, a) at the midpoints tau_i = (i + 1/2) / N (QR-DQN, Dabney et
al. 2018), trained with the quantile Huber loss towards r + gamma (1 - d) (min_k Z_k'(s', a') - alpha log pi). The
actor maximises CVaR_alpha(Z) - alpha log pi, where CVaR_alpha is the mean of the lowest ceil(alpha N) quantiles of
the element-wise minimum of the twins; ``cvar_alpha`` = 1 gives the mean, i.e. SAC with a distributional critic.

Everything else is SAC's: the actor (so the agent serves the same policy file without torch), replay, Polyak
targets, entropy tuning, checkpoints (named ``persist.cvar_sac``) and the publish path.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nodes.sac.config import CVaRSACConfig
from nodes.sac.networks import TwinQ
from nodes.sac.replay import ReplayBatch
from nodes.sac.sac import SAC, UpdateStats


def quantile_huber_loss(pred: Tensor, target: Tensor, taus: Tensor, kappa: float) -> Tensor:
    """pred (B, N) at quantile levels taus (N,), target samples (B, M): mean over batch, sum over N, mean over M."""
    u = target.unsqueeze(1) - pred.unsqueeze(2)  # (B, N, M)
    huber = torch.where(u.abs() <= kappa, 0.5 * u.pow(2), kappa * (u.abs() - 0.5 * kappa))
    weight = (taus.view(1, -1, 1) - (u.detach() < 0).float()).abs()
    return (weight * huber / kappa).mean(2).sum(1).mean()


def cvar(quantiles: Tensor, alpha: float) -> Tensor:
    """Mean of the lowest ceil(alpha N) quantiles: (B, N) -> (B,)."""
    k = max(1, math.ceil(alpha * quantiles.shape[-1] - 1e-9))
    return quantiles.sort(dim=-1).values[..., :k].mean(-1)


class CVaRSAC(SAC):
    checkpoint_format = "persist.cvar_sac"

    def __init__(self, obs_dim: int, act_dim: int, config: CVaRSACConfig | None = None,
                 action_low: tuple[float, ...] = (), action_high: tuple[float, ...] = ()) -> None:
        cfg = config or CVaRSACConfig()
        super().__init__(obs_dim, act_dim, cfg, action_low, action_high)
        self.config: CVaRSACConfig = cfg
        n = cfg.n_quantiles
        self.taus = (torch.arange(n, dtype=torch.float32, device=self.device) + 0.5) / n

    def make_critic(self, obs_dim: int, act_dim: int) -> nn.Module:
        """Twin networks of N return quantiles each, in the place of SAC's twin Q."""
        cfg = self.config
        assert isinstance(cfg, CVaRSACConfig)
        return TwinQ(obs_dim, act_dim, cfg.hidden, cfg.activation, outputs=cfg.n_quantiles)

    def update(self, batch: ReplayBatch) -> UpdateStats:
        cfg, gen = self.config, self.generator
        alpha = self.log_alpha.detach().exp().squeeze()

        with torch.no_grad():
            next_action, next_log_prob, _ = self.actor.sample(batch.next_obs, gen)
            next_z = torch.min(*self.critic_target(batch.next_obs, next_action)) - alpha * next_log_prob.unsqueeze(-1)
            target_z = batch.reward.unsqueeze(-1) + (1.0 - batch.done).unsqueeze(-1) * cfg.gamma * next_z
        z1, z2 = self.critic(batch.obs, batch.action)
        critic_loss = quantile_huber_loss(z1, target_z, self.taus, cfg.huber_kappa) + quantile_huber_loss(
            z2, target_z, self.taus, cfg.huber_kappa)
        self._step("critic", critic_loss)

        # Actor: maximise CVaR_alpha of the (pessimistic) return distribution of its own actions, plus entropy.
        action, log_prob, _ = self.actor.sample(batch.obs, gen)
        actor_loss = (alpha * log_prob - cvar(torch.min(*self.critic(batch.obs, action)), cfg.cvar_alpha)).mean()
        self._step("actor", actor_loss)
        return self._finish_update(log_prob, critic_loss, actor_loss, alpha, z1.mean())
