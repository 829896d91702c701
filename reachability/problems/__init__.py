"""Registry of the shipped problems, by name."""

from __future__ import annotations

from reachability.problem import Problem
from reachability.problems import air3d, double_integrator, gridlife_energy, gridlife_internal, population

PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in (
        double_integrator.PROBLEM,
        population.PROBLEM,
        gridlife_energy.PROBLEM,
        gridlife_internal.PROBLEM,
        air3d.PROBLEM,
    )
}


def get_problem(name: str) -> Problem:
    try:
        return PROBLEMS[name]
    except KeyError:
        raise ValueError(f"problem: unknown problem '{name}', choose from {', '.join(PROBLEMS)}") from None
