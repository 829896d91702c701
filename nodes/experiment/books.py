"""The books of one phase (training or one evaluation), which the env keeps, and the figures read from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Books:
    """Accounting of one phase (training or one evaluation). Counts are arena-steps."""

    env_steps: int = 0
    executed_steps: int = 0  # steps that executed the shield's action
    fallback_steps: int = 0  # steps that executed the env's own fallback
    shield_interventions: int = 0
    violations_executed: int = 0
    episodes: int = 0
    lengths: list[int] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)  # the reward the learner optimises, summed
    task_returns: list[float] = field(default_factory=list)  # the task reward alone, unweighted
    homeo_returns: list[float] = field(default_factory=list)  # the homeostatic reward alone, unweighted
    tokens: list[int] = field(default_factory=list)  # tokens collected (kinds that count them)
    died: list[bool] = field(default_factory=list)
    deaths: dict[str, int] = field(default_factory=dict)  # cause (the broken constraints) -> episodes
    drives: list[float] = field(default_factory=list)
    interventions_per_step: list[int] = field(default_factory=list)
    seed: int | None = None  # an evaluation's arena seed
    start_digest: str = ""  # an evaluation's first observation, hashed: phases on the same arenas share it


def return_figures(books: Books, has_tokens: bool) -> dict[str, float]:
    """The task return apart from the homeostatic one (both unweighted, per episode), and the tokens."""
    figures = {"mean_task_return": mean(books.task_returns), "mean_homeo_return": mean(books.homeo_returns)}
    if has_tokens:
        figures["tokens"] = int(np.sum(books.tokens))
        figures["tokens_per_1000_steps"] = round(1000.0 * figures["tokens"] / max(1, int(np.sum(books.lengths))), 3)
    return figures


def episode_section(books: Books, has_tokens: bool, **extra: float) -> dict[str, Any]:
    """An evaluation's summary: what every evaluation reports, plus its own figures."""
    arenas = {} if books.seed is None else {"seed": books.seed, "start_digest": books.start_digest}
    return {"episodes": books.episodes, "mean_survival_steps": mean(books.lengths),
            "mean_return": mean(books.returns), **return_figures(books, has_tokens),
            "violations": books.violations_executed, "deaths": dict(sorted(books.deaths.items())),
            **arenas, **extra}


def mean(values: list[float] | list[int]) -> float:
    return round(float(np.mean(values)), 3) if len(values) else 0.0


def survival(books: Books) -> float:
    if not books.lengths:
        return 0.0
    return round(float(np.mean([not d for d in books.died])), 4)


def rate(per_step: list[int], num_envs: int, first: bool) -> float:
    """Interventions per arena-step over the first (or last) tenth of the steps."""
    if not per_step:
        return 0.0
    k = max(1, len(per_step) // 10)
    part = per_step[:k] if first else per_step[-k:]
    return round(float(np.sum(part)) / (len(part) * num_envs), 5)
