"""Policies at rest and on the wire: actor tensors + ``ActorSpec`` + version, validated on the way in.

A policy file is one safetensors file written atomically by ``persist_rt.checkpoint``; its JSON
metadata holds the spec and version. The same validation guards files and the ``PolicyWeights``
message, so an agent refuses a wrong architecture, shape, dtype or non-finite weight with a message
naming the field or tensor, and keeps acting with the policy it has. Torch is imported only by the
two state_dict converters, so loading and numpy inference stay torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nodes.sac.spec import ActorSpec, actor_tensor_shapes
from persist_rt import checkpoint
from persist_rt.checkpoint import CheckpointError

if TYPE_CHECKING:
    import torch

FORMAT = "persist.policy"
FORMAT_VERSION = 1

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "Policy",
    "load_newest_policy",
    "load_policy",
    "numpy_to_state_dict",
    "parse_spec",
    "policy_from_wire",
    "save_policy",
    "state_dict_to_numpy",
    "validate_actor_tensors",
]


def parse_spec(data: Any, expected: ActorSpec | None, source: str) -> ActorSpec:
    """Spec from JSON (or an ActorSpec), checked against ``expected`` when given."""
    if isinstance(data, ActorSpec):
        spec = data
    else:
        try:
            spec = ActorSpec.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{source}: spec is invalid: {exc}") from None
    if expected is not None:
        diff = expected.first_difference(spec)
        if diff is not None:
            raise CheckpointError(f"{source}: wrong architecture: spec {diff}")
    return spec


def validate_actor_tensors(tensors: Mapping[str, Any], spec: ActorSpec, source: str) -> dict[str, np.ndarray]:
    """Names, shapes, dtypes (float32) and finiteness of the actor tensors for ``spec``."""
    if not isinstance(tensors, Mapping):
        raise CheckpointError(f"{source}: tensors must be a mapping of name to array")
    for name, t in tensors.items():
        if not isinstance(t, np.ndarray):
            raise CheckpointError(f"{source}: tensor '{name}' is a {type(t).__name__}, expected a numpy array")
    checkpoint.check_tensors(tensors, actor_tensor_shapes(spec), source)
    for name, t in tensors.items():
        if not np.isfinite(t).all():
            raise CheckpointError(f"{source}: tensor '{name}' contains NaN or inf")
    if spec.obs_norm and not (tensors["obs_std"] > 0).all():
        raise CheckpointError(f"{source}: tensor 'obs_std' must be > 0 everywhere")
    return dict(tensors)


def _check_version(version: Any, source: str) -> int:
    if isinstance(version, bool) or not isinstance(version, int | np.integer) or version < 0:
        raise CheckpointError(f"{source}: field 'version' must be an integer >= 0, got {version!r}")
    return int(version)


@dataclass(frozen=True)
class Policy:
    """A validated actor: spec, float32 tensors keyed as in ``actor_tensor_shapes``, version."""

    spec: ActorSpec
    tensors: dict[str, np.ndarray]
    version: int
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = self.source or "policy"
        _check_version(self.version, where)
        object.__setattr__(self, "tensors", validate_actor_tensors(self.tensors, self.spec, where))

    def wire_fields(self) -> dict[str, Any]:
        """Keyword arguments for ``protocols.PolicyWeights``."""
        return {
            "version": self.version,
            "spec": self.spec.to_dict(),
            "tensors": self.tensors,
            "source": self.source,
        }


def policy_from_wire(
    version: Any, spec: Any, tensors: Any, expected: ActorSpec | None, source: str = "policy weights"
) -> Policy:
    """Rebuild a policy from a received ``PolicyWeights`` message's fields, with full validation."""
    checked_spec = parse_spec(spec, expected, source)
    return Policy(checked_spec, tensors, _check_version(version, source), source)


def save_policy(path: str | os.PathLike[str], policy: Policy) -> Path:
    """Write ``policy`` atomically (temp file, fsync, rename), keeping the file it replaces as ``<stem>.prev``."""
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": policy.spec.to_dict(),
        "version": policy.version,
        "source": policy.source,
        "extra": policy.metadata,
    }
    return checkpoint.save(path, policy.tensors, metadata, keep_previous=True)


def load_policy(path: str | os.PathLike[str], expected: ActorSpec | None = None) -> Policy:
    """Read and validate a policy file; with ``expected``, refuse any other architecture."""
    source = str(path)
    tensors, meta = checkpoint.load(path)
    checkpoint.check_meta(meta, source, format=FORMAT, format_version=FORMAT_VERSION)
    if "spec" not in meta:
        raise CheckpointError(f"{source}: field 'spec' is missing")
    spec = parse_spec(meta["spec"], expected, source)
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise CheckpointError(f"{source}: field 'extra' must be a JSON object")
    return Policy(spec, tensors, _check_version(meta.get("version"), source), source, extra)


def load_newest_policy(path: str | os.PathLike[str], expected: ActorSpec | None = None) -> tuple[Policy, list[str]]:
    """The policy at ``path``, or its previous copy when that one is refused: (policy, the refusals)."""
    found = checkpoint.load_newest(path, lambda p: load_policy(p, expected))
    if found is None:
        raise CheckpointError(f"{path}: cannot read (no such file)")
    policy, _, refusals = found
    return policy, refusals


def state_dict_to_numpy(state: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Detached, contiguous CPU copies of a torch state_dict's tensors."""
    return {name: t.detach().cpu().contiguous().numpy().copy() for name, t in state.items()}


def numpy_to_state_dict(
    arrays: Mapping[str, np.ndarray], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Torch tensors on ``device`` for ``load_state_dict`` (copies, so the arrays stay untouched)."""
    import torch

    return {name: torch.from_numpy(np.array(a, copy=True)).to(device) for name, a in arrays.items()}
