"""k-step empowerment I(A_{t:t+k}; S_{t+k} | S_t) with a contrastive (InfoNCE) critic.

For a state s, draw N action sequences a_1..a_N from the source (uniform over the action box) and their outcomes
s'_i. With the critic f(s, a, s') = <phi(s, a), psi(s, s')>,

    I_NCE(s) = mean_i [ f(s, a_i, s'_i) - log( (1/N) sum_j exp f(s, a_j, s'_i) ) ]  <=  log N,

a lower bound on I(A; S' | s) under that source, tight as N grows and the critic approaches
log p(s'|s,a)/p(s'|s) (van den Oord et al. 2018; Poole et al. 2019). With a uniform source this is the mutual
information of the uniform source, itself at most the empowerment (the channel capacity); in a deterministic world
where the k-step sequences reach n cells equally often, both equal log n. Training the critic maximises the bound.

As an intrinsic reward the outcomes come from rollouts of the latent world model, which learns on the batch too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nodes.intrinsic.base import IntrinsicReward
from nodes.intrinsic.world_model import LatentWorldModel
from nodes.sac.networks import mlp


class InfoNCECritic(nn.Module):
    """Separable critic: f(s, a, s') = <phi(s, a), psi(s, s')>."""

    def __init__(self, state_dim: int, seq_dim: int, hidden: tuple[int, ...] = (64,), features: int = 32) -> None:
        super().__init__()
        self.phi = mlp(state_dim + seq_dim, hidden, features, "elu")
        self.psi = mlp(2 * state_dim, hidden, features, "elu")

    def scores(self, state: Tensor, actions: Tensor, outcomes: Tensor) -> Tensor:
        """state (B, d), actions (B, N, m), outcomes (B, N, d) -> scores (B, N, N): [b, i, j] = f(s_b, a_j, s'_i)."""
        n = actions.shape[1]
        s = state.unsqueeze(1).expand(-1, n, -1)
        phi = self.phi(torch.cat([s, actions], dim=-1))
        psi = self.psi(torch.cat([s, outcomes], dim=-1))
        return psi @ phi.transpose(1, 2)

    def bound(self, state: Tensor, actions: Tensor, outcomes: Tensor) -> Tensor:
        """I_NCE per state, (B,): log N minus the cross-entropy of picking each outcome's own action sequence."""
        scores = self.scores(state, actions, outcomes)
        b, n, _ = scores.shape
        target = torch.arange(n, device=scores.device).expand(b, n)
        ce = F.cross_entropy(scores.reshape(b * n, n), target.reshape(-1), reduction="none").reshape(b, n)
        return math.log(n) - ce.mean(-1)


class Empowerment(IntrinsicReward):
    name = "empowerment"

    def __init__(self, obs_dim: int, act_dim: int, lr: float = 1e-3, horizon: int = 3, samples: int = 16,
                 latent: int = 16, hidden: tuple[int, ...] = (64,), action_low: float = -1.0,
                 action_high: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        self.horizon, self.samples, self.act_dim = horizon, samples, act_dim
        self.action_low, self.action_high = action_low, action_high
        self.model = LatentWorldModel(obs_dim, act_dim, latent, hidden)
        self.critic = InfoNCECritic(latent, horizon * act_dim, hidden)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)

    def _rollouts(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Latent start (B, L), action sequences (B, N, k*m) from the uniform source, latent outcomes (B, N, L)."""
        b, n, k, m = obs.shape[0], self.samples, self.horizon, self.act_dim
        u = torch.rand((b, n, k, m), generator=self.generator).to(obs.device)
        actions = self.action_low + (self.action_high - self.action_low) * u
        z0 = self.model.encoder(obs).detach()  # the critic does not shape the world model's latent space
        z = z0.unsqueeze(1).expand(-1, n, -1)
        with torch.no_grad():
            for t in range(k):
                z = self.model.step(z, actions[:, :, t])
        return z0, actions.reshape(b, n, k * m), z

    # The reward is the empowerment of the state reached (the agent is paid for arriving where it keeps options
    # open), and the critic is trained on those same states, so one rollout serves both.

    def losses(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> dict[str, Tensor]:
        return self._losses_and_bound(obs, action, next_obs)[0]

    def raw_reward(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
        return self.critic.bound(*self._rollouts(next_obs)).clamp_min(0.0)

    def fit_reward(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> tuple[dict[str, float], Tensor]:
        """One rollout and one critic pass: the bound that the step maximises is the reward, as the critic was
        just before the step (one step behind, where a separate ``reward`` would cost a second rollout)."""
        losses, bound = self._losses_and_bound(obs, action, next_obs)
        return self.minimise(losses), self.scaled(bound.detach().clamp_min(0.0))

    def _losses_and_bound(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        out = self.model.losses(obs, action, next_obs)
        bound = self.critic.bound(*self._rollouts(next_obs))
        out["infonce"] = -bound.mean()
        return out, bound

    def state_arrays(self):  # type: ignore[no-untyped-def]
        out = super().state_arrays()
        out["generator_state"] = self.generator.get_state().numpy().copy()
        return out

    def load_state_arrays(self, arrays, source):  # type: ignore[no-untyped-def]
        arrays = dict(arrays)
        state = arrays.pop("generator_state", None)
        super().load_state_arrays(arrays, source)
        if state is not None:
            self.generator.set_state(torch.from_numpy(state.astype("uint8")))
