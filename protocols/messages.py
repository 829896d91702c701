"""Every message that crosses a process boundary. Batched: row i of every array is arena i (a TransitionBatch stacks
several steps of such rows).

Changing a field means a new VERSION; the codec refuses a version it does not know.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from protocols.base import FieldError, Message, check_array, check_len, schema

F32 = "float32"
F64 = "float64"


# --- the control loop -------------------------------------------------------------------------


@schema("persist.Observation", 2)
class Observation(Message):
    """What the env publishes each step: observations and the state the shield and learner need.

    The state (positions, internal) is float64, exactly as the env steps it: the shield's rollout
    certificate holds for the state it is computed from, and a float32 copy of a state at the edge of
    the viability kernel can be certified where the state itself is not (docs/shield.md, "Exactness")."""

    step: int
    obs: np.ndarray  # (N, obs_dim) float32
    positions: np.ndarray  # (N, 2) float64, true positions (the shield's state)
    episode_step: np.ndarray  # (N,) int64, steps since the arena's last reset
    internal: np.ndarray | None = None  # (N, H) float64 true internal variables; None when hidden
    sim_time: float = 0.0

    def __post_init__(self) -> None:
        check_array(self.obs, "obs", dtype=F32, ndim=2)
        n = self.obs.shape[0]
        check_array(self.positions, "positions", dtype=F64, ndim=2, rows=n, cols=2)
        if self.internal is not None:
            check_array(self.internal, "internal", dtype=F64, ndim=2, rows=n)
        check_array(self.episode_step, "episode_step", dtype="int64", ndim=1, rows=n)


@schema("persist.StateEstimate", 2)
class StateEstimate(Message):
    """The estimator's belief about hidden internal variables, with its uncertainty and its calibration.

    The confidence set is the box mean +- k * std. ``calibrated`` says that the measured online coverage of
    that box (the share of true internal states inside it) reached the estimator's target; a reader treats an
    uncalibrated belief as no knowledge at all (docs/estimator.md, "Calibration")."""

    step: int
    mean: np.ndarray  # (N, H) float32
    std: np.ndarray  # (N, H) float32, >= 0
    k: float = 0.0  # half-width of the confidence box in units of std
    coverage: float = 0.0  # measured online coverage of the box, in [0, 1]
    calibrated: bool = False

    def __post_init__(self) -> None:
        check_array(self.mean, "mean", dtype=F32, ndim=2)
        check_array(self.std, "std", dtype=F32, ndim=2, rows=self.mean.shape[0], cols=self.mean.shape[1])
        if (self.std < 0).any():
            raise FieldError("std", "must be >= 0")
        if isinstance(self.k, bool) or not isinstance(self.k, int | float) or not 0.0 <= self.k < float("inf"):
            raise FieldError("k", f"must be a finite number >= 0, got {self.k!r}")
        if isinstance(self.coverage, bool) or not isinstance(self.coverage, int | float) \
                or not 0.0 <= self.coverage <= 1.0:
            raise FieldError("coverage", f"must lie in [0, 1], got {self.coverage!r}")
        if not isinstance(self.calibrated, bool):
            raise FieldError("calibrated", f"must be a boolean, got {self.calibrated!r}")


@schema("persist.ProposedAction", 1)
class ProposedAction(Message):
    """The agent's proposal for step ``step``; only the shield consumes it."""

    step: int
    actions: np.ndarray  # (N, A) float32
    policy_version: int = 0

    def __post_init__(self) -> None:
        check_array(self.actions, "actions", dtype=F32, ndim=2)


MODE_PASS, MODE_FILTERED, MODE_FALLBACK = 0, 1, 2
MODE_NAMES = ("pass", "filtered", "fallback")


@schema("persist.SafeAction", 1)
class SafeAction(Message):
    """The only message the env executes. ``mode[i]`` says what the shield did for arena i."""

    step: int
    actions: np.ndarray  # (N, A) float32
    mode: np.ndarray  # (N,) uint8: MODE_PASS | MODE_FILTERED | MODE_FALLBACK
    constraint: list[str]  # per arena: the binding constraint or degradation cause, "" if none
    margin_before: np.ndarray  # (N,) float32, smallest barrier margin of the proposal
    margin_after: np.ndarray  # (N,) float32, smallest barrier margin of the executed action
    policy_version: int = 0
    proposed: np.ndarray | None = None  # (N, A) float32, the proposal answered (in the box, non-finite as 0)

    def __post_init__(self) -> None:
        check_array(self.actions, "actions", dtype=F32, ndim=2)
        n = self.actions.shape[0]
        if self.proposed is not None:
            check_array(self.proposed, "proposed", dtype=F32, ndim=2, rows=n, cols=self.actions.shape[1])
        check_array(self.mode, "mode", dtype="uint8", ndim=1, rows=n)
        if self.mode.max(initial=0) > MODE_FALLBACK:
            raise FieldError("mode", f"values must be 0..{MODE_FALLBACK}")
        check_len(self.constraint, "constraint", n)
        check_array(self.margin_before, "margin_before", dtype=F32, ndim=1, rows=n, finite=False)
        check_array(self.margin_after, "margin_after", dtype=F32, ndim=1, rows=n, finite=False)


@schema("persist.TransitionBatch", 2)
class TransitionBatch(Message):
    """``steps`` consecutive env steps of N arenas from ``step`` on, the learner's replay stream. Rows are
    step-major: row ``s * N + i`` is arena i at step ``step + s`` (one message carries several steps, so the
    consumers decode once per few steps, not once per step). ``terminated`` = death."""

    step: int
    obs: np.ndarray
    actions: np.ndarray
    reward: np.ndarray  # (rows,) total reward the learner optimises
    reward_task: np.ndarray
    reward_homeo: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray  # (rows,) bool
    truncated: np.ndarray  # (rows,) bool
    internal: np.ndarray | None = None  # (rows, H) truth before the step (for estimator/shield training)
    next_internal: np.ndarray | None = None
    steps: int = 1

    def __post_init__(self) -> None:
        check_array(self.obs, "obs", dtype=F32, ndim=2)
        n = self.obs.shape[0]
        if self.steps < 1 or n % self.steps:
            raise FieldError("steps", f"must be >= 1 and divide the {n} rows, got {self.steps}")
        check_array(self.next_obs, "next_obs", dtype=F32, ndim=2, rows=n, cols=self.obs.shape[1])
        check_array(self.actions, "actions", dtype=F32, ndim=2, rows=n)
        for name in ("reward", "reward_task", "reward_homeo"):
            check_array(getattr(self, name), name, dtype=F32, ndim=1, rows=n)
        for name in ("terminated", "truncated"):
            check_array(getattr(self, name), name, dtype="bool", ndim=1, rows=n)
        for name in ("internal", "next_internal"):
            if getattr(self, name) is not None:
                check_array(getattr(self, name), name, dtype=F32, ndim=2, rows=n)

    @property
    def arenas(self) -> int:
        return self.obs.shape[0] // self.steps


@schema("persist.EpisodeEvents", 1)
class EpisodeEvents(Message):
    """Episodes that ended this step, one entry per ended arena."""

    step: int
    arena: np.ndarray  # (K,) int64
    length: np.ndarray  # (K,) int64
    ret: np.ndarray  # (K,) float32 total return
    task_return: np.ndarray  # (K,) float32
    died: np.ndarray  # (K,) bool: ended by a viability violation (else by the cap)
    cause: list[str]  # per entry: which constraint ended it, "" for the cap

    def __post_init__(self) -> None:
        check_array(self.arena, "arena", dtype="int64", ndim=1)
        k = self.arena.shape[0]
        check_array(self.length, "length", dtype="int64", ndim=1, rows=k)
        check_array(self.ret, "ret", dtype=F32, ndim=1, rows=k)
        check_array(self.task_return, "task_return", dtype=F32, ndim=1, rows=k)
        check_array(self.died, "died", dtype="bool", ndim=1, rows=k)
        check_len(self.cause, "cause", k)


@schema("persist.PolicyWeights", 1)
class PolicyWeights(Message):
    """Actor weights from the learner (or a file) to the agent; ``spec`` fixes the architecture."""

    version: int
    spec: dict[str, Any]
    tensors: dict[str, np.ndarray]
    source: str = ""

    def __post_init__(self) -> None:
        if self.version < 0:
            raise FieldError("version", "must be >= 0")
        for name, t in self.tensors.items():
            check_array(t, f"tensors.{name}", dtype=F32, ndim=t.ndim if isinstance(t, np.ndarray) else 1)


@schema("persist.ShieldReport", 2)
class ShieldReport(Message):
    """Explanations of the shield's interventions, one entry per (step, arena) it changed. The shield sends what
    it holds every ``report_period_s``, so one message spans the steps of that period."""

    step: list[int]
    arena: list[int]
    mode: list[str]  # "filtered" | "fallback"
    cause: list[str]  # binding constraint, or degradation cause (stale, ood, disagreement, infeasible, ...)
    margin_before: list[float]
    margin_after: list[float]
    proposed: list[list[float]]
    safe: list[list[float]]

    def __post_init__(self) -> None:
        k = len(self.arena)
        for name in ("step", "mode", "cause", "margin_before", "margin_after", "proposed", "safe"):
            check_len(getattr(self, name), name, k)


# --- runtime plumbing --------------------------------------------------------------------------


@schema("persist.Heartbeat", 1)
class Heartbeat(Message):
    node: str
    state: str
    pid: int
    seq: int


@schema("persist.Metrics", 1)
class Metrics(Message):
    """A node's metrics snapshot: counters are cumulative, gauges are current values."""

    node: str
    counters: dict[str, float]
    gauges: dict[str, float]


@schema("persist.LogRecord", 1)
class LogRecord(Message):
    node: str
    level: str
    event: str
    fields: dict[str, Any] = {}


@schema("persist.ParameterUpdate", 1)
class ParameterUpdate(Message):
    node: str
    name: str
    value: Any
    old: Any = None


# --- multi-agent ----------------------------------------------------------------------------------


@schema("persist.StationRequests", 1)
class StationRequests(Message):
    """The env's requests for station service, one row per body (arena-major): the station each body stands in
    (-1 for none), its demand in [0, 1] of the station's full rate, and its smallest internal margin
    (docs/allocator.md)."""

    step: int
    station: np.ndarray  # (R,) int64
    demand: np.ndarray  # (R,) float32
    margin: np.ndarray  # (R,) float32

    def __post_init__(self) -> None:
        check_array(self.station, "station", dtype="int64", ndim=1)
        n = self.station.shape[0]
        check_array(self.demand, "demand", dtype=F32, ndim=1, rows=n)
        check_array(self.margin, "margin", dtype=F32, ndim=1, rows=n)


@schema("persist.StationGrants", 1)
class StationGrants(Message):
    """The allocator's answer to the requests of ``step``: each body's share of its station's rate, and Jain's
    index over the bodies' satisfaction so far."""

    step: int
    grants: np.ndarray  # (R,) float32 in [0, 1]
    jain_index: float = 1.0

    def __post_init__(self) -> None:
        check_array(self.grants, "grants", dtype=F32, ndim=1)
        if ((self.grants < 0) | (self.grants > 1)).any():
            raise FieldError("grants", "must lie in [0, 1]")


# --- examples and benchmarks -------------------------------------------------------------------


@schema("persist.Text", 1)
class Text(Message):
    data: str
    seq: int = 0


@schema("persist.Blob", 1)
class Blob(Message):
    """An opaque array payload (benchmarks, tests)."""

    data: np.ndarray
    seq: int = 0

    def __post_init__(self) -> None:
        check_array(self.data, "data", dtype=("uint8", "float32", "float64"), ndim=self.data.ndim
                    if isinstance(self.data, np.ndarray) else 1)
