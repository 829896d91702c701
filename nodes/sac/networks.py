"""The policy network shared by agent and learner, and the learner's twin Q critics.

``Actor`` maps observations to a tanh-squashed Gaussian over actions; its ``state_dict()`` names and
shapes are exactly ``actor_tensor_shapes(spec)``, which policy files and the wire form rely on.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nodes.sac.spec import LOG_STD_MAX, LOG_STD_MIN, ActorSpec

__all__ = ["Actor", "ActorSpec", "TwinQ", "activation_fn", "mlp"]

_LOG_2PI = math.log(2 * math.pi)
_LOG_2 = math.log(2.0)


def activation_fn(name: str) -> Callable[[Tensor], Tensor]:
    return {"relu": F.relu, "tanh": torch.tanh, "elu": F.elu}[name]


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}[activation]
    for width in hidden:
        layers += [nn.Linear(in_dim, width), act()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """obs -> (mean, log_std) -> a = bias + scale * tanh(mean + std * eps)."""

    def __init__(self, spec: ActorSpec) -> None:
        super().__init__()
        self.spec = spec
        self.activation = activation_fn(spec.activation)
        widths = (spec.obs_dim, *spec.hidden)
        self.hidden = nn.ModuleList(nn.Linear(i, o) for i, o in itertools.pairwise(widths))
        self.mean = nn.Linear(widths[-1], spec.act_dim)
        self.log_std = nn.Linear(widths[-1], spec.act_dim)
        # Action bounds come from the spec, so they are not saved with the weights.
        self.register_buffer("action_scale", torch.tensor(spec.action_scale, dtype=torch.float32), persistent=False)
        self.register_buffer("action_bias", torch.tensor(spec.action_bias, dtype=torch.float32), persistent=False)
        if spec.obs_norm:
            self.register_buffer("obs_mean", torch.zeros(spec.obs_dim))
            self.register_buffer("obs_std", torch.ones(spec.obs_dim))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-std of the pre-squash Gaussian."""
        x = (obs - self.obs_mean) / self.obs_std if self.spec.obs_norm else obs
        for layer in self.hidden:
            x = self.activation(layer(x))
        log_std = torch.tanh(self.log_std(x))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        return self.mean(x), log_std

    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Reparameterised sample: (action, log_prob of the action, deterministic action)."""
        mean, log_std = self(obs)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        x = mean + log_std.exp() * eps
        gauss_log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)
        # log(1 - tanh(x)^2) in a form that does not underflow for large |x|.
        log_det = (2 * (_LOG_2 - x - F.softplus(-2 * x)) + torch.log(self.action_scale)).sum(-1)
        action = self.action_bias + self.action_scale * torch.tanh(x)
        return action, gauss_log_prob - log_det, self.action_bias + self.action_scale * torch.tanh(mean)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool, generator: torch.Generator | None = None) -> Tensor:
        """Actions for a batch of observations: the squashed mean, or a sample while training."""
        if deterministic:
            mean, _ = self(obs)
            return self.action_bias + self.action_scale * torch.tanh(mean)
        return self.sample(obs, generator)[0]


class TwinQ(nn.Module):
    """Two independent Q(obs, action) networks; SAC uses the minimum to curb overestimation. With ``outputs`` > 1
    each network gives that many values per pair (CVaR-SAC's return quantiles): (B, outputs) instead of (B,)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], activation: str = "relu",
                 outputs: int = 1) -> None:
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, hidden, outputs, activation)
        self.q2 = mlp(obs_dim + act_dim, hidden, outputs, activation)
        self.outputs = outputs

    def forward(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([obs, action], dim=-1)
        if self.outputs > 1:
            return self.q1(x), self.q2(x)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)
