"""What a reachability problem is: state names, box, dynamics, constraint set and its known answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from reachability.dynamics import Dynamics
from reachability.grid import Grid

Scheme = Literal["pde", "semi_lagrangian"]
ValueFn = Callable[[np.ndarray, float], np.ndarray]


@dataclass(frozen=True)
class Problem:
    """An avoid / viability problem: keep l(x) >= 0 (the constraint set K) for the whole horizon.

    The value V(x) = max_control min_disturbance min_{0<=s<=T} l(x(s)); the kernel is {V >= 0}.
    ``analytic_value`` (when known) gives V* at states (..., n) for a horizon; ``analytic_kernel``
    gives the kernel as a boolean mask when only the set is known.
    """

    name: str
    description: str
    state_names: tuple[str, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    default_grid: tuple[int, ...]
    default_horizon: float
    dynamics: Dynamics
    constraint: Callable[[np.ndarray], np.ndarray]
    scheme: Scheme = "pde"
    periodic: tuple[bool, ...] = ()
    semi_lagrangian_dt: float = 0.05
    analytic_value: ValueFn | None = None
    analytic_kernel: Callable[[np.ndarray, float], np.ndarray] | None = None
    constants: dict[str, Any] = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return len(self.state_names)

    def grid(self, shape: tuple[int, ...] | None = None) -> Grid:
        shape = tuple(shape or self.default_grid)
        if len(shape) != self.ndim:
            raise ValueError(f"grid: problem '{self.name}' has {self.ndim} state variables, got {len(shape)} sizes")
        return Grid.from_box(self.lo, self.hi, shape, self.periodic or (False,) * self.ndim)

    def known_kernel(self, states: np.ndarray, horizon: float) -> np.ndarray | None:
        if self.analytic_kernel is not None:
            return self.analytic_kernel(states, horizon)
        if self.analytic_value is not None:
            return self.analytic_value(states, horizon) >= 0
        return None
