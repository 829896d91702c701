"""GridLife constants for the reachability problems.

The environment's own ``GridLifeConfig`` (nodes/env/gridlife.py) is the authority: every constant it
defines under the names below is read from it. Constants it does not (yet) define fall back to the values
here, which follow the structure of docs/gridlife.md; ``source`` records which is which.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class GridLifeConstants:
    vmax: float = 1.0  # m/s at |a| = 1
    arena_size: float = 10.0  # m
    k_basal: float = 0.02  # energy per second at rest
    k_effort: float = 0.03  # extra energy per second at full effort (|a|^2 / 2 = 1)
    rho_refuel: float = 0.5  # energy per second inside a refuel station
    eta_basal: float = 0.01  # heating per second at rest
    eta_effort: float = 0.02  # extra heating per second at full effort
    eta_hot: float = 0.05  # extra heating per second inside a hot zone
    omega_wear: float = 0.005  # integrity lost per second at full effort

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not value >= 0:
                raise ValueError(f"gridlife constant '{f.name}': must be >= 0, got {value}")
        if self.vmax <= 0:
            raise ValueError(f"gridlife constant 'vmax': must be > 0, got {self.vmax}")
        if self.rho_refuel <= self.k_basal + self.k_effort:
            raise ValueError("gridlife constant 'rho_refuel': must exceed the largest drain k_basal + k_effort")


def load_constants() -> tuple[GridLifeConstants, dict[str, Any]]:
    """Constants plus provenance {'source': ..., 'from_env': [names read from GridLifeConfig]}."""
    try:
        module = importlib.import_module("nodes.env.gridlife")
        config = module.GridLifeConfig()
    except (ImportError, AttributeError, TypeError):
        constants = GridLifeConstants()
        constants.validate()
        return constants, {"source": "reachability defaults", "from_env": []}
    values: dict[str, float] = {}
    for f in fields(GridLifeConstants):
        value = getattr(config, f.name, None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[f.name] = float(value)
    constants = GridLifeConstants(**values)
    constants.validate()
    return constants, {"source": "nodes.env.gridlife.GridLifeConfig", "from_env": sorted(values)}
