"""Soft Actor-Critic (Haarnoja et al. 2018): twin Q, Polyak-averaged targets, automatic entropy tuning.

Process-free: the learner node feeds a ``ReplayBuffer``, calls ``update`` as often as
``updates_owed`` says, publishes ``policy(version)`` every ``publish_period`` updates and calls
``checkpoint``/``resume``. Checkpoints hold networks, optimizer moments, alpha, the update count and
the random generator as named numpy tensors (safetensors + JSON), never pickle, so a resumed learner
makes exactly the update the original would have made next.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nodes.sac.config import SACConfig
from nodes.sac.networks import Actor, TwinQ
from nodes.sac.policy_file import Policy, numpy_to_state_dict, state_dict_to_numpy
from nodes.sac.replay import ReplayBatch
from nodes.sac.spec import ActorSpec
from persist_rt import checkpoint
from persist_rt.checkpoint import CheckpointError

CHECKPOINT_FORMAT = "persist.sac"
CHECKPOINT_FORMAT_VERSION = 1
ATTACHED = "attached."  # prefix of the tensors of a model checkpointed with SAC (SAC.checkpoint)


class UpdateStats(Mapping[str, float]):
    """One update's losses, alpha, mean Q and entropy. They stay on the device until first read, because a
    read waits for the device: a learner that runs many updates in a row reads only the last one's.
    ``dict(stats)`` gives plain floats (for JSON, say)."""

    NAMES = ("critic_loss", "actor_loss", "alpha_loss", "alpha", "q_mean", "entropy")

    def __init__(self, values: torch.Tensor) -> None:
        self._values: torch.Tensor | None = values
        self._read: dict[str, float] = {}

    def _as_dict(self) -> dict[str, float]:
        if self._values is not None:
            self._read, self._values = dict(zip(self.NAMES, self._values.tolist(), strict=True)), None
        return self._read

    def __getitem__(self, name: str) -> float:
        return self._as_dict()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.NAMES)

    def __len__(self) -> int:
        return len(self.NAMES)

    def __repr__(self) -> str:
        return f"UpdateStats({self._as_dict()!r})"


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """CPU copy with 0-d tensors as shape (1,)."""
    a = t.detach().cpu().numpy()
    return (a.reshape(1) if a.ndim == 0 else a).copy()


class SAC:
    checkpoint_format = CHECKPOINT_FORMAT  # a variant (CVaR-SAC) names its own, so neither resumes the other

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: SACConfig | None = None,
        action_low: tuple[float, ...] = (),
        action_high: tuple[float, ...] = (),
    ) -> None:
        self.config = cfg = config or SACConfig()
        self.device = cfg.resolve_device()
        self.actor_spec = ActorSpec(obs_dim, act_dim, cfg.hidden, cfg.activation, action_low, action_high)
        # Seeded initialisation without touching the process-wide torch RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.actor = Actor(self.actor_spec).to(self.device)
            self.critic = self.make_critic(obs_dim, act_dim).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        # the acting policy can trail the actor as a running average, so that a published snapshot carries
        # less of the last few updates' noise
        self.actor_average = copy.deepcopy(self.actor).requires_grad_(False) if cfg.policy_average > 0 else None
        # Shape (1,) rather than 0-d: checkpoint files store no 0-d tensors.
        log_alpha = torch.full((1,), math.log(cfg.initial_alpha), device=self.device)
        self.log_alpha = log_alpha.requires_grad_(cfg.autotune_alpha)
        self.target_entropy = float(-act_dim if cfg.target_entropy is None else cfg.target_entropy)
        # Fused Adam: one call per optimizer step. The default runs several ops per parameter on the CPU (fused
        # gives 10-28% more updates/s on one thread at the demo's sizes) and several kernels per step on CUDA.
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "actor": torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, fused=True),
            "critic": torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, fused=True),
        }
        if cfg.autotune_alpha:
            self.optimizers["alpha"] = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr, fused=True)
        # (followers, leaders) parameter lists for the Polyak averages, each moved by one foreach lerp
        self._averaged = [(list(self.critic_target.parameters()), list(self.critic.parameters()), cfg.tau)]
        if self.actor_average is not None:
            self._averaged.append(
                (list(self.actor_average.parameters()), list(self.actor.parameters()), cfg.policy_average)
            )
        # One generator for policy noise in updates; pass it to ReplayBuffer.sample too, so a
        # checkpoint captures every source of randomness.
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.num_updates = 0

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    # --- learning ---------------------------------------------------------------------------

    def make_critic(self, obs_dim: int, act_dim: int) -> torch.nn.Module:
        """The twin critic (a variant changes what it outputs); its target, optimizer and average follow it."""
        return TwinQ(obs_dim, act_dim, self.config.hidden, self.config.activation)

    def update(self, batch: ReplayBatch) -> UpdateStats:
        """One gradient step on critics, actor and alpha, then the target networks; returns losses."""
        cfg, gen = self.config, self.generator
        alpha = self.log_alpha.detach().exp().squeeze()

        # Critics: regress both Q towards r + gamma * (min target Q - alpha * log pi) at s'.
        with torch.no_grad():
            next_action, next_log_prob, _ = self.actor.sample(batch.next_obs, gen)
            next_q = torch.min(*self.critic_target(batch.next_obs, next_action)) - alpha * next_log_prob
            target_q = batch.reward + (1.0 - batch.done) * cfg.gamma * next_q
        q1, q2 = self.critic(batch.obs, batch.action)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self._step("critic", critic_loss)

        # Actor: maximise min Q - alpha * log pi of its own reparameterised actions.
        action, log_prob, _ = self.actor.sample(batch.obs, gen)
        actor_loss = (alpha * log_prob - torch.min(*self.critic(batch.obs, action))).mean()
        self._step("actor", actor_loss)
        return self._finish_update(log_prob, critic_loss, actor_loss, alpha, q1.mean())

    def _finish_update(
        self, log_prob: torch.Tensor, critic_loss: torch.Tensor, actor_loss: torch.Tensor, alpha: torch.Tensor,
        q_mean: torch.Tensor,
    ) -> UpdateStats:
        """The end of every update (SAC's and its variants'): temperature, Polyak averages, count, stats."""
        # Temperature: raise alpha when entropy (-log pi) is below target, lower it when above.
        if self.config.autotune_alpha:
            alpha_loss = -(self.log_alpha.exp().squeeze() * (log_prob.detach() + self.target_entropy)).mean()
            self._step("alpha", alpha_loss)
        else:
            alpha_loss = torch.zeros((), device=self.device)

        with torch.no_grad():
            for followers, leaders, rate in self._averaged:
                torch._foreach_lerp_(followers, leaders, rate)  # one call per list (torch's swa_utils uses it too)
            self.num_updates += 1
            return UpdateStats(torch.stack([critic_loss, actor_loss, alpha_loss, alpha, q_mean, -log_prob.mean()]))

    def _step(self, name: str, loss: torch.Tensor) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def updates_owed(self, transitions_seen: int) -> int:
        """Updates to run now to keep ``utd_ratio`` updates per transition after ``learning_starts``."""
        if transitions_seen < self.config.learning_starts:
            return 0
        due = math.floor((transitions_seen - self.config.learning_starts + 1) * self.config.utd_ratio)
        return max(0, due - self.num_updates)

    def publish_due(self) -> bool:
        """True right after every ``publish_period``-th update."""
        return self.num_updates > 0 and self.num_updates % self.config.publish_period == 0

    def policy(self, version: int | None = None) -> Policy:
        """The acting policy as a validated ``Policy`` (version defaults to the update count): the actor, or its
        running average when ``policy_average`` > 0."""
        acting = self.actor if self.actor_average is None else self.actor_average
        tensors = state_dict_to_numpy(acting.state_dict())
        return Policy(self.actor_spec, tensors, self.num_updates if version is None else version, "learner")

    # --- checkpoints ------------------------------------------------------------------------

    def _networks(self) -> dict[str, torch.nn.Module]:
        networks = {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target}
        if self.actor_average is not None:
            networks["actor_average"] = self.actor_average
        return networks

    def _optimizer_params(self, name: str) -> list[torch.Tensor]:
        return [p for group in self.optimizers[name].param_groups for p in group["params"]]

    def _expected_tensors(self, with_optimizer_state: bool) -> dict[str, tuple[tuple[int, ...], str]]:
        expected: dict[str, tuple[tuple[int, ...], str]] = {}
        for prefix, module in self._networks().items():
            for key, t in module.state_dict().items():
                expected[f"{prefix}.{key}"] = (tuple(t.shape), "float32")
        # Scalars are stored with shape (1,): checkpoint files hold no 0-d tensors.
        expected["log_alpha"] = ((1,), "float32")
        expected["num_updates"] = ((1,), "int64")
        if with_optimizer_state:
            for name in self.optimizers:
                for i, p in enumerate(self._optimizer_params(name)):
                    expected[f"optim.{name}.{i}.step"] = ((1,), "float32")
                    expected[f"optim.{name}.{i}.exp_avg"] = (tuple(p.shape), "float32")
                    expected[f"optim.{name}.{i}.exp_avg_sq"] = (tuple(p.shape), "float32")
        return expected

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything a resumed learner needs, as named numpy arrays (generator state included)."""
        out: dict[str, np.ndarray] = {}
        for prefix, module in self._networks().items():
            out.update({f"{prefix}.{k}": v for k, v in state_dict_to_numpy(module.state_dict()).items()})
        out["log_alpha"] = _to_numpy(self.log_alpha)
        out["num_updates"] = np.asarray([self.num_updates], dtype=np.int64)
        for name, opt in self.optimizers.items():
            for i, moments in opt.state_dict()["state"].items():
                out.update({f"optim.{name}.{i}.{k}": _to_numpy(v) for k, v in moments.items()})
        out["generator_state"] = self.generator.get_state().numpy().copy()
        return out

    def load_state_dict(self, arrays: Mapping[str, np.ndarray], source: str = "SAC state") -> None:
        """Inverse of ``state_dict``; refuses (CheckpointError naming the tensor) before changing anything."""
        arrays = dict(arrays)
        generator_state = arrays.pop("generator_state", None)
        checkpoint.check_tensors(
            {"num_updates": arrays["num_updates"]} if "num_updates" in arrays else {},
            {"num_updates": ((1,), "int64")},
            source,
        )
        num_updates = int(arrays["num_updates"][0])
        checkpoint.check_tensors(arrays, self._expected_tensors(with_optimizer_state=num_updates > 0), source)
        for name, t in arrays.items():
            if t.dtype.kind == "f" and not np.isfinite(t).all():
                raise CheckpointError(f"{source}: tensor '{name}' contains NaN or inf")

        for prefix, module in self._networks().items():
            own = {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + ".")}
            module.load_state_dict(numpy_to_state_dict(own, self.device))
        with torch.no_grad():
            self.log_alpha.copy_(torch.from_numpy(arrays["log_alpha"]))
        for name, opt in self.optimizers.items():
            state: dict[int, dict[str, torch.Tensor]] = {}
            if num_updates > 0:
                for i in range(len(self._optimizer_params(name))):
                    moments = {k: arrays[f"optim.{name}.{i}.{k}"] for k in ("exp_avg", "exp_avg_sq")}
                    state[i] = {k: torch.from_numpy(v.copy()) for k, v in moments.items()}
                    state[i]["step"] = torch.from_numpy(arrays[f"optim.{name}.{i}.step"].copy()).reshape(())
            # Hyperparameters (param_groups) come from the current config, not the checkpoint.
            opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
        self.num_updates = num_updates
        own_state = self.generator.get_state()
        if generator_state is not None and generator_state.shape == tuple(own_state.shape):
            self.generator.set_state(torch.from_numpy(generator_state.astype(np.uint8)))
        else:  # saved on another device type: continue with a fresh stream derived from the seed
            self.generator.manual_seed(self.config.seed + num_updates)

    def checkpoint(
        self, path: str | os.PathLike[str], extra: Mapping[str, Any] | None = None,
        attached: Mapping[str, np.ndarray] | None = None,
    ) -> Path:
        """Atomic checkpoint (temp file, fsync, rename), the one it replaces kept as ``<stem>.prev``; ``extra``
        is stored as JSON for the caller, ``attached`` tensors (a model trained beside SAC, such as an intrinsic
        reward) under ``attached.<name>`` in the same write, so the two can never come from different moments."""
        metadata = {
            "format": self.checkpoint_format,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "actor_spec": self.actor_spec.to_dict(),
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.config).items()},
            "extra": dict(extra or {}),
        }
        tensors = self.state_dict()
        tensors.update({ATTACHED + name: value for name, value in (attached or {}).items()})
        return checkpoint.save(path, tensors, metadata, keep_previous=True)

    def resume(
        self, path: str | os.PathLike[str],
        attached: Callable[[dict[str, np.ndarray], dict[str, Any], str], None] | None = None,
    ) -> dict[str, Any]:
        """Load a checkpoint written by ``checkpoint``; returns its ``extra`` metadata. ``attached(tensors, extra,
        source)`` gets the attached tensors first and may refuse them (CheckpointError) before SAC changes."""
        source = str(path)
        arrays, meta = checkpoint.load(path)
        checkpoint.check_meta(meta, source, format=self.checkpoint_format, format_version=CHECKPOINT_FORMAT_VERSION)
        try:
            saved_spec = ActorSpec.from_dict(meta.get("actor_spec", {}))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{source}: field 'actor_spec' is invalid: {exc}") from None
        diff = self.actor_spec.first_difference(saved_spec)
        if diff is not None:
            raise CheckpointError(f"{source}: wrong architecture: actor_spec {diff}")
        extra = meta.get("extra", {})
        extra = extra if isinstance(extra, dict) else {}
        others = {k[len(ATTACHED):]: arrays.pop(k) for k in [k for k in arrays if k.startswith(ATTACHED)]}
        if attached is not None:
            attached(others, extra, source)
        self.load_state_dict(arrays, source)
        return extra
