"""The actor's architecture as data: ``ActorSpec`` fixes every tensor name, shape and dtype.

Torch-free on purpose: the agent node, the policy-file loader and the numpy inference path all
need the spec, and none of them should pay for importing torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

ACTIVATIONS = ("relu", "tanh", "elu")
# The log-std head is squashed into [LOG_STD_MIN, LOG_STD_MAX] (CleanRL's bounds); part of the
# architecture, so torch and numpy paths read them from here.
LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0
DTYPE = "float32"


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"ActorSpec field '{name}' must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class ActorSpec:
    """Everything that determines the actor network: tensors, activation, action bounds.

    ``action_low``/``action_high`` default to -1/+1 per dimension; ``obs_norm`` adds two fixed
    buffers ``obs_mean``/``obs_std`` and the actor sees ``(obs - obs_mean) / obs_std``.
    """

    obs_dim: int
    act_dim: int
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    action_low: tuple[float, ...] = field(default=())
    action_high: tuple[float, ...] = field(default=())
    obs_norm: bool = False

    def __post_init__(self) -> None:
        _positive_int(self.obs_dim, "obs_dim")
        _positive_int(self.act_dim, "act_dim")
        if not isinstance(self.hidden, tuple | list) or not self.hidden:
            raise ValueError(f"ActorSpec field 'hidden' must be a non-empty list of sizes, got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(self.hidden))
        for i, h in enumerate(self.hidden):
            _positive_int(h, f"hidden[{i}]")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"ActorSpec field 'activation' is {self.activation!r}, expected one of {ACTIVATIONS}")
        if not isinstance(self.obs_norm, bool):
            raise ValueError(f"ActorSpec field 'obs_norm' must be a bool, got {self.obs_norm!r}")
        for name, default in (("action_low", -1.0), ("action_high", 1.0)):
            bounds = getattr(self, name)
            bounds = (default,) * self.act_dim if len(bounds) == 0 else tuple(float(b) for b in bounds)
            if len(bounds) != self.act_dim:
                raise ValueError(f"ActorSpec field '{name}' has {len(bounds)} entries, expected act_dim={self.act_dim}")
            if not all(math.isfinite(b) for b in bounds):
                raise ValueError(f"ActorSpec field '{name}' must be finite, got {bounds}")
            object.__setattr__(self, name, bounds)
        if any(lo >= hi for lo, hi in zip(self.action_low, self.action_high, strict=True)):
            raise ValueError("ActorSpec field 'action_low' must be below 'action_high' in every dimension")

    @property
    def action_scale(self) -> tuple[float, ...]:
        return tuple((hi - lo) / 2 for lo, hi in zip(self.action_low, self.action_high, strict=True))

    @property
    def action_bias(self) -> tuple[float, ...]:
        return tuple((hi + lo) / 2 for lo, hi in zip(self.action_low, self.action_high, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tuples become lists)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActorSpec:
        """Inverse of ``to_dict``; unknown or missing fields raise ValueError naming the field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"ActorSpec must be a mapping, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ActorSpec field '{unknown[0]}' is not known")
        for required in ("obs_dim", "act_dim"):
            if required not in data:
                raise ValueError(f"ActorSpec field '{required}' is missing")
        kwargs = dict(data)
        for name in ("hidden", "action_low", "action_high"):
            if name in kwargs:
                if not isinstance(kwargs[name], list | tuple):
                    raise ValueError(f"ActorSpec field '{name}' must be a list, got {kwargs[name]!r}")
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs)

    def first_difference(self, other: ActorSpec) -> str | None:
        """Name and values of the first field where two specs differ, or None when equal."""
        mine, theirs = self.to_dict(), other.to_dict()
        for name in mine:
            if mine[name] != theirs[name]:
                return f"field '{name}' is {theirs[name]}, expected {mine[name]}"
        return None


def actor_tensor_shapes(spec: ActorSpec) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, dtype)} of every actor tensor; torch ``Actor.state_dict()`` uses these names."""
    shapes: dict[str, tuple[tuple[int, ...], str]] = {}
    fan_in = spec.obs_dim
    for i, width in enumerate(spec.hidden):
        shapes[f"hidden.{i}.weight"] = ((width, fan_in), DTYPE)
        shapes[f"hidden.{i}.bias"] = ((width,), DTYPE)
        fan_in = width
    for head in ("mean", "log_std"):
        shapes[f"{head}.weight"] = ((spec.act_dim, fan_in), DTYPE)
        shapes[f"{head}.bias"] = ((spec.act_dim,), DTYPE)
    if spec.obs_norm:
        shapes["obs_mean"] = ((spec.obs_dim,), DTYPE)
        shapes["obs_std"] = ((spec.obs_dim,), DTYPE)
    return shapes
