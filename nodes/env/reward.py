"""The reward the learner optimises, composed from a step's parts in one place (env node and GridLifeEnv).

    r = lambda_task r_task + lambda_homeo (D(h) - gamma D(h')) + death_penalty [died]
        + token_shaping (d - gamma d') - intervention_penalty [the shield changed the action]

with gamma = homeo_discount and d the distance to the nearest token (d' = 0 where one was collected).
The learner's intrinsic terms are added by the learner itself (docs/intrinsic.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from nodes.env.homeostat import Homeostat
from nodes.env.step import StepResult


@dataclass(frozen=True)
class RewardTerms:
    """Weights of the reward's terms; the defaults give r = r_task + r_homeo."""

    lambda_task: float = 1.0
    lambda_homeo: float = 1.0
    death_penalty: float = 0.0  # <= 0
    homeo_discount: float = 1.0  # in (0, 1]; 1.0: plain drive reduction
    token_shaping: float = 0.0  # >= 0, reward per metre closer to the nearest token
    intervention_penalty: float = 0.0  # >= 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{f.name}: must be a finite number, got {value!r}")
        if self.death_penalty > 0:
            raise ValueError(f"death_penalty: must be <= 0, got {self.death_penalty}")
        if not 0 < self.homeo_discount <= 1:
            raise ValueError(f"homeo_discount: must be in (0, 1], got {self.homeo_discount}")
        for name in ("lambda_task", "lambda_homeo", "token_shaping", "intervention_penalty"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")

    def compose(
        self,
        step: StepResult,
        homeostat: Homeostat | None = None,
        token_dist: tuple[int, float] | None = None,
        dtype: type = np.float32,
    ) -> np.ndarray:
        """The reward of ``step`` before any intervention penalty. ``homeostat`` gives D(h') for a discount < 1;
        ``token_dist`` is (observation column of the token distance, its scale in metres) for token shaping."""
        homeo = step.homeo_reward
        if self.homeo_discount < 1.0 and homeostat is not None:  # D(h) - gamma D(h') = r_homeo + (1 - gamma) D(h')
            homeo = homeo + (1.0 - self.homeo_discount) * homeostat.drive(step.next_internal)
        reward = (
            self.lambda_task * step.task_reward + self.lambda_homeo * homeo + self.death_penalty * step.terminated
        ).astype(dtype)
        if self.token_shaping and token_dist is not None:
            reward += self.token_shaping * self.token_progress(step, *token_dist)
        return reward

    def token_progress(self, step: StepResult, column: int, scale: float) -> np.ndarray:
        """Metres closer to the nearest token, d - gamma d' (d' = 0 where a token was collected)."""
        after = np.where(step.task_reward > 0, 0.0, step.next_obs[:, column] * scale)
        return (step.obs[:, column] * scale - self.homeo_discount * after).astype(np.float32)

    def penalise(self, reward: np.ndarray, intervened: np.ndarray) -> None:
        """Subtract the intervention penalty, in place, where the shield changed the action."""
        if self.intervention_penalty:
            reward -= self.intervention_penalty * intervened
