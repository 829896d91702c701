"""Online calibration of the estimator's confidence box mean +- k * std against the truth.

Each published estimate is scored when the truth of its step arrives (the replay stream carries it):
z = max_j |truth_j - mean_j| / std_j is the smallest k whose box holds that true state, and the estimate
was covered if z <= the k it was published with. ``coverage`` is the share covered over the last
``window`` scored rows: out of sample, since k is fixed before the truth is known. While coverage is
below ``target``, k widens (by ``widen`` per scored step, and at once to ``margin`` times the window's
``target`` quantile of z); above it, k relaxes slowly towards that quantile. A belief is ``calibrated``
only once ``min_samples`` rows were scored and coverage reached the target: readers treat anything else
as no knowledge (the shield then certifies against the whole range of each variable). ``min_samples`` 0 is
for a box exact by construction (the interval belief): trusted from its first step, until the truth is seen
outside it. A warm-up of no knowledge is not free: nothing is certified then and the backup acts uncertified,
which on a few arenas lasts hundreds of steps and can end in a violation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

MIN_STD = 1e-6  # a std of zero claims certainty: scored as if it were this small


@dataclass(frozen=True)
class CalibrationConfig:
    target: float = 0.999  # coverage the box must reach before the belief is trusted
    window: int = 20_000  # scored rows (arena-steps) the coverage and the quantile are taken over
    min_samples: int = 2_000  # scored rows before the belief can be calibrated (0: trusted until refuted)
    k_start: float = 3.0
    k_min: float = 0.0  # k never falls below this (1 for a box that is exact by construction)
    k_max: float = 1e6
    widen: float = 1.05  # k *= widen per scored step while coverage is below target
    margin: float = 1.2  # k >= margin * the window's target quantile of z
    relax: float = 0.9995  # k *= relax per scored step above target, never below margin * quantile

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"CalibrationConfig field '{f.name}' must be a finite number, got {value!r}")
        if not 0.0 < self.target < 1.0:
            raise ValueError(f"CalibrationConfig field 'target' must lie in (0, 1), got {self.target!r}")
        for name, low in (("window", 1), ("min_samples", 0)):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < low:
                raise ValueError(f"CalibrationConfig field '{name}' must be an integer >= {low}")
        if not 0.0 < self.k_start <= self.k_max or not 0.0 <= self.k_min <= self.k_start:
            raise ValueError("CalibrationConfig fields 'k_min'/'k_start'/'k_max': need 0 <= k_min <= k_start <= k_max, "
                             "k_start > 0")
        if self.widen < 1.0 or self.margin < 1.0 or not 0.0 < self.relax <= 1.0:
            raise ValueError("CalibrationConfig fields 'widen', 'margin' must be >= 1 and 'relax' in (0, 1]")


class Calibration:
    """Coverage of the k * std box, measured online, and the k that keeps it at the target."""

    def __init__(self, cfg: CalibrationConfig | None = None) -> None:
        self.cfg = CalibrationConfig() if cfg is None else cfg
        self.k = float(self.cfg.k_start)
        self.z = np.zeros(self.cfg.window)  # ring buffers of the last `window` scored rows
        self.covered = np.zeros(self.cfg.window, dtype=bool)
        self.filled = 0
        self.next = 0
        self.samples = 0  # rows scored in all
        self.covered_total = 0
        # scored rows when the belief first became calibrated (0: trusted from the start)
        self.calibrated_since: int | None = 0 if self.cfg.min_samples == 0 else None

    @property
    def coverage(self) -> float:
        return float(self.covered[: self.filled].mean()) if self.filled else 0.0

    @property
    def calibrated(self) -> bool:
        if not self.filled:  # nothing scored yet: only a box exact by construction is trusted
            return self.cfg.min_samples == 0
        return self.samples >= self.cfg.min_samples and self.coverage >= self.cfg.target

    def score(self, mean: np.ndarray, std: np.ndarray, k_used: float, truth: np.ndarray) -> None:
        """Rows (N, H) of one published estimate, the k it went out with, and the truth of its step."""
        err = np.abs(np.asarray(truth, np.float64) - np.asarray(mean, np.float64))
        z = (err / np.maximum(np.asarray(std, np.float64), MIN_STD)).max(axis=1)
        z = np.where(np.isfinite(z), z, np.inf)
        covered = z <= k_used
        for zi, ci in zip(z.tolist(), covered.tolist(), strict=True):  # a few rows per step
            self.z[self.next], self.covered[self.next] = zi, ci
            self.next = (self.next + 1) % self.cfg.window
        self.filled = min(self.cfg.window, self.filled + len(z))
        self.samples += len(z)
        self.covered_total += int(covered.sum())
        self.update_k()
        if self.calibrated_since is None and self.calibrated:
            self.calibrated_since = self.samples

    def update_k(self) -> None:
        cfg = self.cfg
        needed = cfg.margin * float(np.quantile(self.z[: self.filled], cfg.target))
        if self.coverage < cfg.target:
            k = max(self.k * cfg.widen, needed)
        else:
            k = max(self.k * cfg.relax, needed)
        self.k = max(min(k, cfg.k_max), cfg.k_min) if math.isfinite(k) else cfg.k_max

    def figures(self) -> dict[str, Any]:
        """The calibration's state for telemetry and the run summary."""
        return {
            "target": self.cfg.target,
            "k": round(self.k, 4),
            "coverage": round(self.coverage, 5),  # over the last `window` scored rows
            "coverage_total": round(self.covered_total / self.samples, 5) if self.samples else None,
            "scored": self.samples,
            "calibrated": self.calibrated,
            "calibrated_after_scored": self.calibrated_since,
        }
