"""The one home of SAC's and CVaR-SAC's hyperparameters and their defaults (torch-free).

The learner node takes them whole from its ``sac`` parameter (and ``cvar_sac`` for CVaR-SAC), a mapping
checked field by field here, so a launch file is refused before anything starts, naming the field:
``learner: {params: {sac: {batch_size: 128, tau: 0.01}}}``. The defaults are the ones the main job
(launch/single_agent.yaml) trains with. ``device`` and ``seed`` are the learner's own parameters (the
launcher's ``--seed`` reaches every node's ``seed``), so the mapping may not set them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from nodes.sac.spec import ACTIVATIONS

NODE_FIELDS = ("device", "seed")  # set by the learner node's own parameters, never by the mapping


class ConfigError(ValueError):
    """A bad field: ``field`` and ``reason`` for messages such as ``sac.tau: must be in (0, 1]``."""

    def __init__(self, config: str, field: str, reason: str) -> None:
        super().__init__(f"{config} field '{field}' {reason}")
        self.field = field
        self.reason = reason


def _integer(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


@dataclass(frozen=True)
class SACConfig:
    gamma: float = 0.99  # discount
    tau: float = 0.005  # target networks move this fraction towards the online ones per update
    actor_lr: float = 3e-4
    critic_lr: float = 1e-3
    alpha_lr: float = 1e-3
    batch_size: int = 128
    hidden: tuple[int, ...] = (128, 128)  # actor and critics alike
    activation: str = "relu"
    initial_alpha: float = 0.2  # entropy temperature at the start
    autotune_alpha: bool = True  # learn alpha so that the policy entropy tracks target_entropy
    target_entropy: float | None = None  # None: -act_dim
    utd_ratio: float = 0.25  # gradient updates per transition received
    publish_period: int = 50  # K: publish actor weights every K updates
    policy_average: float = 0.0  # > 0: the policy handed out is a Polyak average of the actor with this rate
    learning_starts: int = 2_000  # transitions before the first update
    replay_capacity: int = 200_000
    device: str = "auto"  # "auto" (CUDA when present) | "cpu" | "cuda" | "cuda:N"
    seed: int = 0

    def bad(self, name: str, reason: str) -> ConfigError:
        return ConfigError(type(self).__name__, name, f"{reason}, got {getattr(self, name)!r}")

    def __post_init__(self) -> None:
        bad = self.bad
        if not (isinstance(self.gamma, int | float) and 0.0 <= self.gamma < 1.0):
            raise bad("gamma", "must be in [0, 1)")
        if not (isinstance(self.tau, int | float) and 0.0 < self.tau <= 1.0):
            raise bad("tau", "must be in (0, 1]")
        if not (isinstance(self.policy_average, int | float) and 0.0 <= self.policy_average <= 1.0):
            raise bad("policy_average", "must be in [0, 1]")
        for name in ("actor_lr", "critic_lr", "alpha_lr", "initial_alpha", "utd_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise bad(name, "must be a finite number > 0")
        for name, low in (("batch_size", 1), ("publish_period", 1), ("learning_starts", 0), ("replay_capacity", 1),
                          ("seed", 0)):
            if not _integer(getattr(self, name), low):
                raise bad(name, f"must be an integer >= {low}")
        if not isinstance(self.hidden, list | tuple):
            raise bad("hidden", "must be a non-empty list of positive integers")
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if not self.hidden or not all(_integer(h, 1) for h in self.hidden):
            raise bad("hidden", "must be a non-empty list of positive integers")
        if self.activation not in ACTIVATIONS:
            raise bad("activation", f"must be one of {ACTIVATIONS}")
        if not isinstance(self.autotune_alpha, bool):
            raise bad("autotune_alpha", "must be true or false")
        if self.target_entropy is not None and not (
                isinstance(self.target_entropy, int | float) and math.isfinite(self.target_entropy)):
            raise bad("target_entropy", "must be finite or None")
        if not (isinstance(self.device, str) and (self.device in ("auto", "cpu", "cuda")
                                                  or self.device.startswith("cuda:"))):
            raise bad("device", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'")

    @classmethod
    def mapping_defaults(cls) -> dict[str, Any]:
        """Every field a launch-file mapping may set, with its default (what ``persist param list`` shows)."""
        return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default
                for f in fields(cls) if f.name not in NODE_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SACConfig:
        """Config from a mapping; an unknown key is an error naming it."""
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise ConfigError(cls.__name__, str(key), f"is not known (known: {', '.join(sorted(known))})")
        return cls(**data)

    @classmethod
    def check_mapping(cls, data: Any) -> dict[str, Any]:
        """A launch-file mapping (values may be text, from ``--set``) as plain checked values; ConfigError naming
        the field otherwise. Only the fields given are returned: the rest keep their defaults."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError:
                raise ConfigError(cls.__name__, "", f"expected a mapping of field: value, got {data!r}") from None
        if not isinstance(data, Mapping):
            raise ConfigError(cls.__name__, "", f"expected a mapping of field: value, got {data!r}")
        types = {f.name: str(f.type) for f in fields(cls)}
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in NODE_FIELDS:
                raise ConfigError(cls.__name__, str(key), f"is the learner's own parameter `{key}`, not set here")
            if isinstance(value, str) and types.get(key, "str") != "str":
                try:
                    value = json.loads(value.strip().lower() if value.strip().lower() in ("true", "false")
                                       else value)
                except json.JSONDecodeError:
                    raise ConfigError(cls.__name__, str(key), f"expected {types[key]}, got {value!r}") from None
            out[str(key)] = value
        cls.from_dict(out)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def resolve_device(self) -> Any:
        """The torch device (imported here: the config itself is read without torch)."""
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(type(self).__name__, "device", f"is {self.device!r} but CUDA is not available")
        return torch.device(self.device)


@dataclass(frozen=True)
class CVaRSACConfig(SACConfig):
    n_quantiles: int = 32
    cvar_alpha: float = 1.0  # the fraction of the worst returns the actor optimises; 1.0: the mean
    huber_kappa: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _integer(self.n_quantiles, 1):
            raise self.bad("n_quantiles", "must be an integer >= 1")
        if not (isinstance(self.cvar_alpha, int | float) and 0.0 < self.cvar_alpha <= 1.0):
            raise self.bad("cvar_alpha", "must be in (0, 1]")
        if not (isinstance(self.huber_kappa, int | float) and self.huber_kappa > 0):
            raise self.bad("huber_kappa", "must be > 0")
