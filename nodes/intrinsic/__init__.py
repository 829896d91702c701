"""Intrinsic rewards by name: ``make(name, obs_dim, act_dim)`` for the learner; ``METHODS`` lists the names."""

from __future__ import annotations

from typing import Any

METHODS = ("none", "surprise_minimise", "surprise_seek", "rnd", "empowerment")


def check_method(name: Any, field: str = "intrinsic") -> str:
    if name not in METHODS:
        raise ValueError(f"field '{field}' must be one of {', '.join(METHODS)}, got {name!r}")
    return str(name)


def make(name: str, obs_dim: int, act_dim: int, seed: int = 0, **options: Any) -> Any:
    """A fresh intrinsic reward (torch imported here, not at package import); None for 'none'."""
    check_method(name)
    if name == "none":
        return None
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name in ("surprise_minimise", "surprise_seek"):
            from nodes.intrinsic.surprise import Surprise

            return Surprise(obs_dim, act_dim, minimise=name == "surprise_minimise", **options)
        if name == "rnd":
            from nodes.intrinsic.rnd import RND

            return RND(obs_dim, act_dim, **options)
        from nodes.intrinsic.empowerment import Empowerment

        return Empowerment(obs_dim, act_dim, seed=seed, **options)
