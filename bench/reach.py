"""Benchmark: persist's reachability solver against hj_reachability (JAX, CPU), same problem, grid, horizon.

Prints ONE JSON line with keys time_s.<problem>.<grid>.{persist,hj_reachability} (warm wall time) and
max_err.<problem>.<grid>.{persist,hj_reachability} (max |V - V*| on the interior, double integrator only).
Needs the bench extra: pip install hj-reachability jax. persist's WENO5 and Hamiltonian kernels are compiled
by numba on first use (a few seconds, cached on disk); the warm-up call keeps that out of the timings, as it
keeps JAX's compilation out of hj_reachability's. persist runs on one thread, JAX on all cores.
Run: .venv/bin/python bench/reach.py
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import hj_reachability as hj
import jax.numpy as jnp
import numpy as np

from reachability.accuracy import ACCURACY
from reachability.avoid import solve_avoid
from reachability.problems import get_problem

HJ_ACCURACY = "very_high"  # WENO5 + TVD-RK3, the counterpart of persist's "high"


class HjDoubleIntegrator(hj.ControlAndDisturbanceAffineDynamics):
    def __init__(self) -> None:
        super().__init__(
            "max", "min", hj.sets.Box(jnp.array([-1.0]), jnp.array([1.0])), hj.sets.Box(jnp.zeros(1), jnp.zeros(1))
        )

    def open_loop_dynamics(self, state, time):
        return jnp.array([state[1], 0.0])

    def control_jacobian(self, state, time):
        return jnp.array([[0.0], [1.0]])

    def disturbance_jacobian(self, state, time):
        return jnp.zeros((2, 1))


def hj_solve(problem, shape, dynamics, horizon: float) -> np.ndarray:
    periodic = [i for i, p in enumerate(problem.periodic or ()) if p]
    grid = hj.Grid.from_lattice_parameters_and_boundary_conditions(
        hj.sets.Box(np.array(problem.lo), np.array(problem.hi)), shape, periodic_dims=periodic or None
    )
    values = jnp.asarray(problem.constraint(np.asarray(grid.states)))
    settings = hj.SolverSettings.with_accuracy(
        HJ_ACCURACY, hamiltonian_postprocessor=hj.solver.backwards_reachable_tube
    )
    out = hj.step(settings, dynamics, grid, 0.0, values, -horizon, progress_bar=False)
    return np.asarray(out.block_until_ready())


def persist_solve(problem, shape, horizon: float) -> np.ndarray:
    grid = problem.grid(shape)
    value, _ = solve_avoid(grid, problem.dynamics, problem.constraint(grid.states), horizon, ACCURACY["high"])
    return value


def warm_time(fn) -> tuple[float, np.ndarray]:
    fn()  # warm-up: JIT compilation for JAX, caches and allocator for numpy
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def interior_max_error(problem, shape, value: np.ndarray, horizon: float) -> float:
    exact = problem.analytic_value(problem.grid(shape).states, horizon)
    k = max(1, shape[0] // 20)
    return float(np.abs(value - exact)[k:-k, k:-k].max())


def main() -> None:
    figures: dict[str, float | str] = {"hj_reachability.accuracy": HJ_ACCURACY, "persist.accuracy": "high"}
    di = get_problem("double_integrator")
    for n in (101, 201):
        shape, key = (n, n), f"{n}x{n}"
        horizon = di.default_horizon
        for name, fn in (
            ("persist", lambda shape=shape, horizon=horizon: persist_solve(di, shape, horizon)),
            (
                "hj_reachability",
                lambda shape=shape, horizon=horizon: hj_solve(di, shape, HjDoubleIntegrator(), horizon),
            ),
        ):
            seconds, value = warm_time(fn)
            figures[f"time_s.double_integrator.{key}.{name}"] = round(seconds, 3)
            figures[f"max_err.double_integrator.{key}.{name}"] = round(interior_max_error(di, shape, value, horizon), 5)
    air = get_problem("air3d")
    shape = air.default_grid
    key = "x".join(map(str, shape))
    t_persist, v_persist = warm_time(lambda: persist_solve(air, shape, air.default_horizon))
    t_hj, v_hj = warm_time(lambda: hj_solve(air, shape, hj.systems.Air3d(), air.default_horizon))
    figures[f"time_s.air3d.{key}.persist"] = round(t_persist, 3)
    figures[f"time_s.air3d.{key}.hj_reachability"] = round(t_hj, 3)
    figures[f"kernel_disagreement.air3d.{key}"] = round(float(((v_persist >= 0) != (v_hj >= 0)).mean()), 5)
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
