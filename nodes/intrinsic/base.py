"""The interface every intrinsic reward keeps, and the pieces they share (running scale, checkpoint tensors).

An intrinsic reward owns its models. The learner calls ``fit`` on each sampled batch and ``reward`` on the same
batch, so the reward always comes from the current model: a reward stored in the replay buffer when the
transition arrived would go stale as the model learns (a novel state stops being novel).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from nodes.sac.policy_file import numpy_to_state_dict, state_dict_to_numpy
from persist_rt import checkpoint
from persist_rt.checkpoint import CheckpointError


class RunningMoments(nn.Module):
    """Running mean and variance over batches (Chan et al. parallel update); buffers, so they are checkpointed."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        shape = shape or (1,)  # checkpoint files hold no 0-d tensors
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        self.register_buffer("count", torch.full((1,), 1e-4))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        n = float(x.shape[0])
        batch_mean, batch_var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total) / total)
        self.count.copy_(total)

    @property
    def std(self) -> Tensor:
        return (self.var + 1e-8).sqrt()


class IntrinsicReward(nn.Module):
    """Base of every intrinsic term: ``fit(batch) -> losses``, ``reward(batch) -> (B,)``, ``state_dict``.

    ``reward`` is divided by a running standard deviation of the raw term (not centred, so the sign of a term
    stays its meaning), which makes ``lambda_intr`` mean the same across tasks and observation scales.
    Subclasses set ``self.optimizer`` and implement ``raw_reward`` and ``losses``.
    """

    name = "base"
    sign = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.scale = RunningMoments()
        self.optimizer: torch.optim.Optimizer | None = None

    def raw_reward(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
        raise NotImplementedError

    def losses(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> dict[str, Tensor]:
        """Named losses; their sum is minimised by ``fit``."""
        raise NotImplementedError

    def fit(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> dict[str, float]:
        return self.minimise(self.losses(obs, action, next_obs))

    def minimise(self, losses: dict[str, Tensor]) -> dict[str, float]:
        """One optimizer step on the sum of ``losses``; their values as floats."""
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()  # type: ignore[union-attr]
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def reward(self, obs: Tensor, action: Tensor, next_obs: Tensor, update_scale: bool = True) -> Tensor:
        return self.scaled(self.raw_reward(obs, action, next_obs), update_scale)

    @torch.no_grad()
    def scaled(self, raw: Tensor, update_scale: bool = True) -> Tensor:
        """The raw term, signed and divided by its running scale (updated with ``raw`` first)."""
        if update_scale:
            self.scale.update(raw)
        return self.sign * raw / self.scale.std

    def fit_reward(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> tuple[dict[str, float], Tensor]:
        """``fit`` on the batch, then its ``reward`` (what the learner calls on every sampled batch). A term whose
        fit computes its reward on the way overrides this to do that work once."""
        return self.fit(obs, action, next_obs), self.reward(obs, action, next_obs)

    # --- checkpoints: named numpy arrays, optimizer moments included -------------------------------------------

    def state_arrays(self) -> dict[str, np.ndarray]:
        out = {f"model.{k}": v for k, v in state_dict_to_numpy(self.state_dict()).items()}
        if self.optimizer is not None:
            for i, moments in self.optimizer.state_dict()["state"].items():
                for k, v in moments.items():
                    a = v.detach().cpu().numpy()
                    out[f"optim.{i}.{k}"] = (a.reshape(1) if a.ndim == 0 else a).astype(np.float32)
        return out

    def load_state_arrays(self, arrays: Mapping[str, np.ndarray], source: str) -> None:
        """Inverse of ``state_arrays``; refuses (naming the tensor) before changing anything."""
        expected = {f"model.{k}": (tuple(t.shape), "float32") for k, t in self.state_dict().items()}
        model = {k: v for k, v in arrays.items() if k.startswith("model.")}
        checkpoint.check_tensors(model, expected, source)
        for name, t in arrays.items():
            if not np.isfinite(t).all():
                raise CheckpointError(f"{source}: tensor '{name}' contains NaN or inf")
        params = [p for group in self.optimizer.param_groups for p in group["params"]] if self.optimizer else []
        state: dict[int, dict[str, Tensor]] = {}
        for i, p in enumerate(params):
            if f"optim.{i}.exp_avg" not in arrays:
                continue
            for k, shape in (("step", (1,)), ("exp_avg", tuple(p.shape)), ("exp_avg_sq", tuple(p.shape))):
                if tuple(arrays[f"optim.{i}.{k}"].shape) != shape:
                    raise CheckpointError(f"{source}: tensor 'optim.{i}.{k}' has shape "
                                          f"{tuple(arrays[f'optim.{i}.{k}'].shape)}, expected {shape}")
            state[i] = {k: torch.from_numpy(arrays[f"optim.{i}.{k}"].copy()) for k in ("exp_avg", "exp_avg_sq")}
            state[i]["step"] = torch.from_numpy(arrays[f"optim.{i}.step"].copy()).reshape(())
        self.load_state_dict(numpy_to_state_dict({k[6:]: v for k, v in model.items()}, self.scale.mean.device))
        if self.optimizer is not None:
            groups = self.optimizer.state_dict()["param_groups"]
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})


def p95(x: Tensor) -> float:
    return float(torch.quantile(x.float(), 0.95)) if x.numel() else math.nan
