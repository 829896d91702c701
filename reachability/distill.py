"""Distil a computed kernel into the shield's viability network, with held-out sign metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reachability.compute import KernelResult


@dataclass(frozen=True)
class DistillConfig:
    hidden: tuple[int, ...] = (64, 64)
    epochs: int = 2000
    lr: float = 3e-3
    boundary_weight: float = 10.0
    holdout: float = 0.2  # share of grid points kept out of training for the reported metrics
    seed: int = 0

    def validate(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout: must be in (0, 1), got {self.holdout}")
        if self.epochs <= 0:
            raise ValueError(f"epochs: must be > 0, got {self.epochs}")


def distill_kernel(kernel: KernelResult, config: DistillConfig) -> tuple[Any, dict[str, Any]]:
    """Train a ViabilityNet on (grid point, V) pairs; returns (net, report). ``report['holdout']`` holds the
    accuracy and false-safe rate on grid points the network never saw."""
    from nodes.shield.viability import ViabilityNet, classification_metrics, fit_viability

    config.validate()
    states = kernel.grid.states.reshape(-1, kernel.grid.ndim).astype(np.float32)
    margins = kernel.value.reshape(-1).astype(np.float32)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(states.shape[0])
    n_hold = max(1, int(config.holdout * states.shape[0]))
    hold, train = order[:n_hold], order[n_hold:]
    net = ViabilityNet(kernel.metadata["state_names"], kernel.grid.lo, kernel.grid.hi, config.hidden)
    fit = fit_viability(
        net,
        states[train],
        margins[train],
        boundary_weight=config.boundary_weight,
        epochs=config.epochs,
        lr=config.lr,
        seed=config.seed,
    )
    held = classification_metrics(net.margin(states[hold]), margins[hold])
    return net, {"train": fit, "holdout": held, "holdout_points": int(n_hold)}
