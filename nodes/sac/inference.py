"""Acting with a policy in the agent node: a numpy actor (no torch import) and a torch one.

Both take numpy observations ``(B, obs_dim)`` and return float32 actions ``(B, act_dim)``; the
stochastic path draws its noise from the caller's ``np.random.Generator``, so for the same seed the
two backends return the same actions (to float32 rounding) and the agent's random stream does not
depend on the backend. ``DEFAULT_BACKEND`` is the faster one at the agent's batch sizes (see
``bench/learner.py``, keys ``actor_infer_us.*``).
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

from nodes.sac.policy_file import Policy
from nodes.sac.spec import LOG_STD_MAX, LOG_STD_MIN, ActorSpec

Backend = Literal["numpy", "torch"]
DEFAULT_BACKEND: Backend = "numpy"


class InferenceActor(Protocol):
    spec: ActorSpec
    version: int

    def act(self, obs: np.ndarray, deterministic: bool, rng: np.random.Generator | None = None) -> np.ndarray: ...


def _check_obs(obs: np.ndarray, spec: ActorSpec) -> np.ndarray:
    obs = np.asarray(obs, dtype=np.float32)
    if obs.ndim != 2 or obs.shape[1] != spec.obs_dim:
        raise ValueError(f"obs has shape {obs.shape}, expected (batch, {spec.obs_dim})")
    return obs


def _squash(x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return (bias + scale * np.tanh(x)).astype(np.float32, copy=False)


def _noise(rng: np.random.Generator | None, shape: tuple[int, ...]) -> np.ndarray:
    if rng is None:
        raise ValueError("rng is required for stochastic actions (pass an np.random.Generator)")
    return rng.standard_normal(shape, dtype=np.float32)


class NumpyActor:
    """The ``Actor`` forward pass in numpy; weights pre-transposed, both heads in one matmul."""

    def __init__(self, policy: Policy) -> None:
        self.spec = spec = policy.spec
        self.version = policy.version
        t = policy.tensors
        self._layers = [
            (np.ascontiguousarray(t[f"hidden.{i}.weight"].T), t[f"hidden.{i}.bias"].copy())
            for i in range(len(spec.hidden))
        ]
        self._head_w = np.ascontiguousarray(np.concatenate([t["mean.weight"], t["log_std.weight"]]).T)
        self._head_b = np.concatenate([t["mean.bias"], t["log_std.bias"]])
        self._norm = (t["obs_mean"].copy(), t["obs_std"].copy()) if spec.obs_norm else None
        self._scale = np.asarray(spec.action_scale, dtype=np.float32)
        self._bias = np.asarray(spec.action_bias, dtype=np.float32)
        self._activation = {
            "relu": lambda x: np.maximum(x, 0, out=x),
            "tanh": lambda x: np.tanh(x, out=x),
            "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))).astype(np.float32, copy=False),
        }[spec.activation]

    def distribution(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and log-std of the pre-squash Gaussian, as ``Actor.forward``."""
        x = _check_obs(obs, self.spec)
        if self._norm is not None:
            x = (x - self._norm[0]) / self._norm[1]
        for w, b in self._layers:
            x = self._activation(x @ w + b)
        out = x @ self._head_w + self._head_b
        a = self.spec.act_dim
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (np.tanh(out[:, a:]) + 1)
        return out[:, :a], log_std.astype(np.float32, copy=False)

    def act(self, obs: np.ndarray, deterministic: bool, rng: np.random.Generator | None = None) -> np.ndarray:
        mean, log_std = self.distribution(obs)
        if not deterministic:
            mean = mean + np.exp(log_std) * _noise(rng, mean.shape)
        return _squash(mean, self._scale, self._bias)


class TorchActor:
    """The torch ``Actor`` behind the same numpy interface (CPU unless told otherwise)."""

    def __init__(self, policy: Policy, device: str = "cpu") -> None:
        import torch

        from nodes.sac.networks import Actor
        from nodes.sac.policy_file import numpy_to_state_dict

        self._torch = torch
        self.spec, self.version, self.device = policy.spec, policy.version, torch.device(device)
        self.actor = Actor(policy.spec).to(self.device).eval()
        self.actor.load_state_dict(numpy_to_state_dict(policy.tensors, self.device))
        self._scale = np.asarray(policy.spec.action_scale, dtype=np.float32)
        self._bias = np.asarray(policy.spec.action_bias, dtype=np.float32)

    def distribution(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self._torch.from_numpy(_check_obs(obs, self.spec)).to(self.device)
        with self._torch.no_grad():
            mean, log_std = self.actor(x)
        return mean.cpu().numpy(), log_std.cpu().numpy()

    def act(self, obs: np.ndarray, deterministic: bool, rng: np.random.Generator | None = None) -> np.ndarray:
        mean, log_std = self.distribution(obs)
        if not deterministic:
            mean = mean + np.exp(log_std) * _noise(rng, mean.shape)
        return _squash(mean, self._scale, self._bias)


def make_inference_actor(policy: Policy, backend: Backend = DEFAULT_BACKEND) -> InferenceActor:
    """The agent's actor for ``policy``: ``numpy`` (default, no torch import) or ``torch``."""
    if backend == "numpy":
        return NumpyActor(policy)
    if backend == "torch":
        return TorchActor(policy)
    raise ValueError(f"backend is {backend!r}, expected 'numpy' or 'torch'")
