"""Multi-agent GridLife: N bodies per arena sharing stations, hazards and tokens (docs/gridlife.md, "Multi-agent").

Every body follows GridLife's own equations (kernels.internal_served, the single-agent transition with the
station's service scaled by the body's share of it) and its homeostat; this module adds what only several
bodies have: stations whose rate is shared among the bodies in them, tokens that go to one body, and a
separation constraint between bodies. `MultiGridLifeBatch` steps many arenas together; `parallel_env`
wraps one arena as a PettingZoo `ParallelEnv`.
"""

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv

from nodes.env import kernels
from nodes.env.gridlife import (
    START_HIGH,
    START_LOW,
    GridLifeConfig,
    GridLifeLayout,
    arena_rngs,
    build_layout,
    edge_distance,
    free_positions,
    is_dead,
    is_violation,
    margins,
    obs_bounds,
    obs_names,
    read_only,
)
from nodes.env.homeostat import Homeostat
from nodes.env.reward import RewardTerms
from nodes.env.step import StepResult

# constants of a body that an agent type may change; the world's (layout, station rates) stay shared
TYPE_FIELDS: tuple[str, ...] = ("vmax", "k_basal", "k_effort", "eta_basal", "eta_effort", "omega_wear")
NEIGHBOUR_NAMES: tuple[str, str, str] = ("agent_dx", "agent_dy", "agent_dist")
NO_STATION = -1


@dataclass(frozen=True)
class AgentType:
    """`count` bodies whose constants differ from the world's by `overrides` (fields in TYPE_FIELDS)."""

    name: str
    count: int
    overrides: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_params(cls, index: int, params: Any) -> "AgentType":
        where = f"agent_types[{index}]"
        if not isinstance(params, Mapping):
            raise ValueError(f"{where}: expected a mapping with name, count and overrides, got {params!r}")
        rest = dict(params)
        name, count = rest.pop("name", None), rest.pop("count", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.name: expected a non-empty string, got {name!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{where}.count: expected an integer >= 1, got {count!r}")
        unknown = sorted(str(key) for key in rest if key not in TYPE_FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; a type may set {', '.join(TYPE_FIELDS)}")
        return cls(name, count, tuple(sorted(rest.items())))


@dataclass(frozen=True)
class MultiGridLifeConfig:
    """The world (`world`, a GridLifeConfig) and what several bodies add to it."""

    world: GridLifeConfig = dataclasses.field(default_factory=GridLifeConfig)
    num_agents: int = 4
    min_separation: float = 0.4  # metres between body centres; closer is a collision, a violation for both
    station_capacity: float = 1.0  # bodies a station serves at full rate; more share it
    spawn_clearance: float = 0.3  # extra distance beyond min_separation at which bodies (re)spawn
    agent_types: tuple[AgentType, ...] = ()  # empty: every body is of the world's type, named "base"

    def __post_init__(self) -> None:
        if isinstance(self.num_agents, bool) or not isinstance(self.num_agents, int) or self.num_agents < 1:
            raise ValueError(f"num_agents: expected an integer >= 1, got {self.num_agents!r}")
        for name in ("min_separation", "station_capacity", "spawn_clearance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        if self.station_capacity <= 0:
            raise ValueError(f"station_capacity: must be > 0, got {self.station_capacity}")
        if self.agent_types:
            total = sum(t.count for t in self.agent_types)
            if total != self.num_agents:
                raise ValueError(f"agent_types: counts sum to {total}, but num_agents is {self.num_agents}")
            names = [t.name for t in self.agent_types]
            if len(set(names)) != len(names):
                raise ValueError(f"agent_types: names must be unique, got {names}")
        for t in self.types:  # each type's constants pass GridLife's own checks
            try:
                dataclasses.replace(self.world, **dict(t.overrides))
            except ValueError as exc:
                raise ValueError(f"agent_types ({t.name}): {exc}") from exc

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "MultiGridLifeConfig":
        """Fields of this class and of GridLifeConfig in one mapping; unknown keys are refused by name."""
        if not isinstance(params, Mapping):
            raise ValueError(f"params: expected a mapping, got {type(params).__name__}")
        own = {f.name for f in dataclasses.fields(cls)} - {"world"}
        values = {key: value for key, value in params.items() if key in own}
        world = GridLifeConfig.from_params({key: value for key, value in params.items() if key not in own})
        types = values.get("agent_types", ())
        if not isinstance(types, Sequence) or isinstance(types, str):
            raise ValueError(f"agent_types: expected a list of mappings, got {types!r}")
        values["agent_types"] = tuple(
            t if isinstance(t, AgentType) else AgentType.from_params(i, t) for i, t in enumerate(types)
        )
        return cls(world=world, **values)

    @property
    def types(self) -> tuple[AgentType, ...]:
        return self.agent_types or (AgentType("base", self.num_agents),)

    def type_config(self, t: AgentType) -> GridLifeConfig:
        return dataclasses.replace(self.world, **dict(t.overrides))

    @property
    def agent_type_index(self) -> np.ndarray:
        """(A,) index into `types` of each body, in order."""
        return np.repeat(np.arange(len(self.types)), [t.count for t in self.types])


def multi_obs_names(cfg: MultiGridLifeConfig) -> list[str]:
    """GridLife's observation of the body, then (dx, dy, dist) / L to the nearest other body."""
    return [*obs_names(cfg.world), *NEIGHBOUR_NAMES]


@functools.lru_cache(maxsize=32)
def multi_obs_bounds(cfg: MultiGridLifeConfig) -> tuple[np.ndarray, np.ndarray]:
    fastest = max(cfg.type_config(t).vmax for t in cfg.types)
    low, high = obs_bounds(dataclasses.replace(cfg.world, vmax=fastest))
    bounds = np.concatenate([low, [-1.0, -1.0, 0.0]]).astype(np.float32), \
        np.concatenate([high, [1.0, 1.0, math.sqrt(2.0)]]).astype(np.float32)  # fmt: skip
    for array in bounds:
        array.setflags(write=False)
    return bounds


@dataclass(kw_only=True)
class MultiStepResult(StepResult):
    """StepResult with leading axes (arenas, agents), and what only shared arenas have.

    `margins` gains "separation" (distance to the nearest other body minus min_separation); `violation`
    includes collisions. Bodies that are not `active` (ended, without auto-reset) have all-False flags.
    """

    collision: np.ndarray  # (N, A) bool, separation < 0 after the step
    station: np.ndarray  # (N, A) index of the station the body is in at p', or -1
    share: np.ndarray  # (N, A) fraction of its station's full rate the body received (0 outside stations)
    occupancy: np.ndarray  # (N, S) bodies in each station at p'
    active: np.ndarray  # (N, A) bool, the body took part in this step


def stations_at(pos: np.ndarray, layout: GridLifeLayout, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, A) index of the station each active body at `pos` stands in (stations are disjoint), or NO_STATION;
    and the (N, A, S) membership it was read from."""
    inside = (edge_distance(pos, layout.station_centres, layout.station_radii) <= 0) & active[..., None]
    return np.where(inside.any(axis=-1), inside.argmax(axis=-1), NO_STATION), inside


class MultiGridLifeBatch:
    """`num_envs` arenas of `num_agents` bodies each. With `auto_reset`, a body that dies or reaches the cap
    respawns alone while the others go on; without it, it stays out until `reset` (PettingZoo's convention)."""

    def __init__(self, cfg: MultiGridLifeConfig | None = None, num_envs: int = 1, auto_reset: bool = True) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs: must be an integer >= 1, got {num_envs!r}")
        self.cfg = MultiGridLifeConfig() if cfg is None else cfg
        world = self.cfg.world
        self.num_envs, self.num_agents, self.auto_reset = num_envs, self.cfg.num_agents, auto_reset
        self.layout = build_layout(world)
        self.homeostat = Homeostat(world.setpoints, world.drive_weights, world.drive_form, world.drive_n, world.drive_m)
        self.obs_names = multi_obs_names(self.cfg)
        self.obs_dim = len(self.obs_names)
        self.obs_low, self.obs_high = multi_obs_bounds(self.cfg)
        self.type_index = self.cfg.agent_type_index
        type_params = np.stack([kernels.params(self.cfg.type_config(t)) for t in self.cfg.types])
        self._agent_params = type_params[self.type_index]  # (A, P): one row of constants per body
        self._step_len = self._agent_params[:, kernels.E_DT] * self._agent_params[:, kernels.E_VMAX]
        self._rows_params = np.ascontiguousarray(np.tile(self._agent_params, (num_envs, 1)))
        self._tables = kernels.tables(self.layout)
        n, a = num_envs, self.num_agents
        self._rngs: list[np.random.Generator] = []
        self._pos = np.zeros((n, a, 2))
        self._velocity = np.zeros((n, a, 2))
        self._internal = np.zeros((n, a, 3))
        self._tokens = np.zeros((n, world.n_tokens, 2))
        self._steps = np.zeros((n, a), dtype=np.int64)
        self._active = np.zeros((n, a), dtype=bool)

    @property
    def positions(self) -> np.ndarray:
        return read_only(self._pos)

    @property
    def internal(self) -> np.ndarray:
        return read_only(self._internal)

    @property
    def active(self) -> np.ndarray:
        return read_only(self._active)

    @property
    def tokens(self) -> np.ndarray:
        return read_only(self._tokens)

    @property
    def episode_steps(self) -> np.ndarray:
        """(N, A) steps of each body's episode so far."""
        return read_only(self._steps)

    def place(self, positions: np.ndarray, internal: np.ndarray | None = None) -> None:
        """Put every body at `positions` (N, A, 2) (and internal states (N, A, 3)): a chosen scene, after reset."""
        if not self._rngs:
            raise RuntimeError("MultiGridLifeBatch.place called before reset")
        for name, value, k in (("positions", positions, 2), ("internal", internal, 3)):
            if value is not None and np.shape(value) != (self.num_envs, self.num_agents, k):
                expected = (self.num_envs, self.num_agents, k)
                raise ValueError(f"{name}: expected shape {expected}, got {np.shape(value)}")
        self._pos = np.clip(np.asarray(positions, dtype=np.float64), 0.0, self.cfg.world.arena_size)
        if internal is not None:
            self._internal = np.asarray(internal, dtype=np.float64).copy()

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every arena; arena i draws from its own generator spawned from `seed`."""
        self._rngs = arena_rngs(seed, self.num_envs, self._rngs)
        self._active[:] = False
        for i in range(self.num_envs):
            if self.cfg.world.n_tokens:
                self._tokens[i] = self._free_positions(i, self.cfg.world.n_tokens, avoid_stations=True)
            for j in range(self.num_agents):
                self._spawn(i, j)
        return self.observe()

    def observe(self) -> np.ndarray:
        """(N, A, obs_dim) float32: GridLife's observation of each body, then its nearest neighbour."""
        n, a = self.num_envs, self.num_agents
        tokens = np.ascontiguousarray(np.repeat(self._tokens, a, axis=0))
        base_low, base_high = self.obs_low[:-3], self.obs_high[:-3]
        own = kernels.observe_batch(self._pos.reshape(-1, 2), self._velocity.reshape(-1, 2),
                                    self._internal.reshape(-1, 3), tokens, not self.cfg.world.partial_observability,
                                    base_low, base_high, self._agent_params[0],
                                    *self._tables).reshape(n, a, -1)  # fmt: skip
        gaps, nearest = self._nearest_other(self._pos)
        offset = np.take_along_axis(self._pos, nearest[..., None], axis=1) - self._pos
        alone = ~np.isfinite(gaps)
        L = self.cfg.world.arena_size
        neighbour = np.concatenate([offset / L, np.where(alone, math.sqrt(2.0) * L, gaps)[..., None] / L], axis=-1)
        neighbour[alone, :2] = 0.0
        out = np.concatenate([own, neighbour.astype(np.float32)], axis=-1)
        return np.clip(out, self.obs_low, self.obs_high)

    def step(self, actions: np.ndarray, shares: np.ndarray | None = None) -> MultiStepResult:
        """One step of every arena. `shares` (N, A) are the allocator's grants: the fraction of its station's
        rate each body gets (the grants in one station must sum to <= 1); None shares every station equally."""
        if not self._rngs:
            raise RuntimeError("MultiGridLifeBatch.step called before reset")
        cfg, world, layout = self.cfg, self.cfg.world, self.layout
        active = self._active.copy()
        action = np.where(active[..., None], self._checked_actions(actions), 0.0)
        obs, internal = self.observe(), self._internal  # before the step (`place` may have moved the bodies)
        pos_next = np.clip(self._pos + self._step_len[:, None] * action, 0.0, world.arena_size)
        # which station each body is in at p' (stations are disjoint), and how many share each station
        station, inside = stations_at(pos_next, layout, active)
        occupancy = inside.sum(axis=1)
        grant = self._checked_shares(shares, station, occupancy)
        share = np.where(station >= 0, np.minimum(1.0, cfg.station_capacity * grant), 0.0)
        internal_next = kernels.served_batch(self._internal.reshape(-1, 3), pos_next.reshape(-1, 2),
                                             action.reshape(-1, 2), share.reshape(-1), self._rows_params,
                                             *self._tables).reshape(self._internal.shape)  # fmt: skip
        internal_next = np.where(active[..., None], internal_next, self._internal)
        homeo_reward = np.where(active, self.homeostat.reward(self._internal, internal_next), 0.0)
        tokens = self._collect_tokens(pos_next, active)
        task_reward = tokens * world.token_reward
        self._pos = np.where(active[..., None], pos_next, self._pos)
        self._velocity = self._agent_params[:, kernels.E_VMAX, None] * action
        self._internal = internal_next.copy()
        self._steps = self._steps + active
        margin = margins(pos_next, internal_next, world, layout)
        margin["separation"] = self._nearest_other(self._pos)[0] - cfg.min_separation
        collision = (margin["separation"] < 0) & active
        terminated = is_dead(margin) & active
        truncated = ~terminated & (self._steps >= world.episode_cap) & active
        violation = (is_violation(margin, dead=terminated) | collision) & active
        next_obs = self.observe()
        episode_steps = self._steps.copy()
        done = terminated | truncated
        for i, j in zip(*np.nonzero(done), strict=True):
            if self.auto_reset:
                self._spawn(int(i), int(j))
            else:
                self._active[i, j] = False
        reset_obs = self.observe() if done.any() else next_obs
        return MultiStepResult(
            obs=obs, next_obs=next_obs, reset_obs=reset_obs, internal=internal, next_internal=internal_next,
            next_positions=pos_next, task_reward=task_reward,
            tokens=tokens, homeo_reward=homeo_reward, terminated=terminated, truncated=truncated, violation=violation,
            margins=margin, episode_steps=episode_steps, collision=collision, station=station, share=share,
            occupancy=occupancy, active=active,
        )  # fmt: skip

    # ---------------------------------------------------------------------------------------- internals

    def _nearest_other(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance (N, A) to the nearest other active body (inf when alone) and its index."""
        gaps = np.linalg.norm(pos[:, :, None, :] - pos[:, None, :, :], axis=-1)
        others = self._active[:, None, :] & ~np.eye(self.num_agents, dtype=bool)[None]
        gaps = np.where(others, gaps, np.inf)
        nearest = gaps.argmin(axis=-1)
        return np.take_along_axis(gaps, nearest[..., None], axis=-1)[..., 0], nearest

    def _checked_actions(self, actions: np.ndarray) -> np.ndarray:
        a = np.asarray(actions)
        if a.shape != (self.num_envs, self.num_agents, 2):
            raise ValueError(f"actions: expected shape ({self.num_envs}, {self.num_agents}, 2), got {a.shape}")
        if a.dtype.kind not in "fiu":
            raise ValueError(f"actions: expected real numbers, got dtype {a.dtype}")
        a = a.astype(np.float64)
        bad = ~(np.abs(a) <= 1.0).all(axis=-1) & self._active  # NaN fails the comparison too
        if bad.any():
            i, j = (int(x) for x in np.argwhere(bad)[0])
            reason = "is not finite" if not np.isfinite(a[i, j]).all() else "is outside [-1, 1]"
            raise ValueError(f"actions: arena {i}, agent {j}: action {a[i, j].tolist()} {reason}")
        return a

    def _checked_shares(self, shares: np.ndarray | None, station: np.ndarray, occupancy: np.ndarray) -> np.ndarray:
        """The grant of each body in a station: the allocator's, checked, or 1 / (bodies in the station)."""
        if shares is None:
            count = np.take_along_axis(occupancy, np.maximum(station, 0), axis=1)
            return np.where(station >= 0, 1.0 / np.maximum(count, 1), 0.0)
        s = np.asarray(shares, dtype=np.float64)
        if s.shape != station.shape:
            raise ValueError(f"shares: expected shape {station.shape}, got {s.shape}")
        if not (np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()):
            i, j = (int(x) for x in np.argwhere(~(np.isfinite(s) & (s >= 0) & (s <= 1)))[0])
            raise ValueError(f"shares: arena {i}, agent {j}: {s[i, j]} is not a number in [0, 1]")
        s = np.where(station >= 0, s, 0.0)
        per_station = np.zeros(occupancy.shape)
        rows = np.nonzero(station >= 0)
        np.add.at(per_station, (rows[0], station[rows]), s[rows])
        if (per_station > 1.0 + 1e-6).any():  # a float32 rounding over 1 is scaled back below, not refused
            i, k = (int(x) for x in np.argwhere(per_station > 1.0 + 1e-6)[0])
            raise ValueError(f"shares: arena {i}, station {k}: grants sum to {per_station[i, k]:.6g} > 1")
        return s / np.maximum(np.take_along_axis(per_station, np.maximum(station, 0), axis=1), 1.0)

    def _collect_tokens(self, pos_next: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Tokens (N, A) each body collected: a token reached by several bodies at once goes to the lowest-numbered
        one; each respawns."""
        counts = np.zeros((self.num_envs, self.num_agents), dtype=np.int64)
        if not self.cfg.world.n_tokens:
            return counts
        gaps = np.linalg.norm(pos_next[:, :, None, :] - self._tokens[:, None, :, :], axis=-1)
        hits = (gaps <= self.cfg.world.token_radius) & active[..., None]  # (N, A, K)
        for i, k in zip(*np.nonzero(hits.any(axis=1)), strict=True):
            counts[i, hits[i, :, k].argmax()] += 1
            self._tokens[i, k] = self._free_positions(int(i), 1, avoid_stations=True)[0]
        return counts

    def _spawn(self, i: int, j: int) -> None:
        """Body j of arena i starts afresh, clear of hazards and of the other bodies."""
        world, rng = self.cfg.world, self._rngs[i]
        self._pos[i, j] = self._free_positions(i, 1, avoid_stations=False, body=j)[0]
        self._velocity[i, j] = 0.0
        start = np.asarray(world.setpoints) + rng.uniform(-world.init_spread, world.init_spread, size=3)
        self._internal[i, j] = np.clip(start, START_LOW, START_HIGH)
        self._steps[i, j] = 0
        self._active[i, j] = True

    def _free_positions(self, i: int, count: int, avoid_stations: bool, body: int | None = None) -> np.ndarray:
        """GridLife's free positions; for a body, also min_separation + spawn_clearance from the others."""
        others = self._pos[i][self._active[i] & (np.arange(self.num_agents) != body)] if body is not None else None
        gap = self.cfg.min_separation + self.cfg.spawn_clearance
        return free_positions(self._rngs[i], self.cfg.world, self.layout, count, avoid_stations, others, gap)


# --------------------------------------------------------------------------------------------- PettingZoo


class MultiGridLifeParallelEnv(ParallelEnv):
    """One arena of multi-agent GridLife as a PettingZoo ParallelEnv. reward = r_task + lambda_homeo * r_homeo
    per agent; a body that dies leaves `agents` (terminated), the cap truncates the rest."""

    metadata = {"name": "multi_gridlife_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, config: MultiGridLifeConfig | None = None, lambda_homeo: float = 1.0,
                 render_mode: str | None = None, **params: Any) -> None:  # fmt: skip
        if render_mode is not None:
            raise ValueError(f"render_mode: multi_gridlife renders nothing, got {render_mode!r}")
        if isinstance(lambda_homeo, bool) or not isinstance(lambda_homeo, int | float) \
                or not math.isfinite(lambda_homeo):
            raise ValueError(f"lambda_homeo: must be finite, got {lambda_homeo!r}")
        if config is not None and params:
            raise ValueError(f"params: give either config or parameters, not both ({', '.join(sorted(params))})")
        self.config = config if config is not None else MultiGridLifeConfig.from_params(params)
        self.lambda_homeo, self.render_mode = float(lambda_homeo), None
        self._batch = MultiGridLifeBatch(self.config, num_envs=1, auto_reset=False)
        self.possible_agents = [f"agent_{j}" for j in range(self.config.num_agents)]
        self.agents: list[str] = []
        low, high = self._batch.obs_low, self._batch.obs_high
        self._obs_space = gymnasium.spaces.Box(low, high, dtype=np.float32)
        self._spaces = {agent: gymnasium.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
                        for agent in self.possible_agents}  # fmt: skip

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._obs_space

    def action_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None:
            for j, space in enumerate(self._spaces.values()):
                space.seed(seed + j)
        obs = self._batch.reset(seed=seed)[0]
        self.agents = list(self.possible_agents)
        return {a: obs[j] for j, a in enumerate(self.agents)}, {a: {} for a in self.agents}

    def step(self, actions: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        unknown = sorted(str(a) for a in actions if a not in self.agents)
        if unknown:
            raise ValueError(f"actions: no live agent named {', '.join(unknown)}")
        joint = np.zeros((1, self.config.num_agents, 2))
        for agent, action in actions.items():
            joint[0, self.possible_agents.index(agent)] = np.asarray(action, dtype=np.float64).reshape(2)
        result = self._batch.step(joint)
        reward = RewardTerms(lambda_homeo=self.lambda_homeo).compose(result, dtype=np.float64)[0]
        live = [(j, a) for j, a in enumerate(self.possible_agents) if a in self.agents]
        obs = {a: result.next_obs[0, j] for j, a in live}
        rewards = {a: float(reward[j]) for j, a in live}
        terminated = {a: bool(result.terminated[0, j]) for j, a in live}
        truncated = {a: bool(result.truncated[0, j]) for j, a in live}
        infos = {a: {"task_reward": float(result.task_reward[0, j]), "homeo_reward": float(result.homeo_reward[0, j]),
                     "violation": bool(result.violation[0, j]), "collision": bool(result.collision[0, j]),
                     "share": float(result.share[0, j])} for j, a in live}  # fmt: skip
        self.agents = [a for j, a in live if not (terminated[a] or truncated[a])]
        return obs, rewards, terminated, truncated, infos


def parallel_env(**kwargs: Any) -> MultiGridLifeParallelEnv:
    """PettingZoo's constructor convention: keyword arguments are MultiGridLifeConfig and GridLifeConfig fields,
    plus `lambda_homeo`."""
    return MultiGridLifeParallelEnv(**kwargs)
