"""GridLife: a vectorised continuous arena in which an agent must keep itself alive.

The equations are written out in docs/gridlife.md; `next_position`, `internal_step` and `margins`
are those equations as pure functions, so the shield and the reachability solver share them (the
transition and the observation run as compiled kernels, nodes/env/kernels.py). `GridLifeBatch` steps
N independent arenas and auto-resets the ones that end.
"""

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nodes.config_fields import check_at_least, check_types
from nodes.env import kernels
from nodes.env.homeostat import DRIVE_FORMS, Homeostat
from nodes.env.step import StepResult

INTERNAL_NAMES: tuple[str, str, str] = ("energy", "temperature", "integrity")
MARGIN_NAMES: tuple[str, str, str, str] = ("energy", "temperature", "integrity", "hazard")
STATION_KINDS: tuple[str, str, str] = ("refuel", "cool", "repair")
# start states are clipped into this box, which keeps them strictly viable whatever the setpoints
START_LOW, START_HIGH = (0.05, 0.0, 0.05), (1.0, 0.95, 1.0)


@dataclass(frozen=True)
class GridLifeConfig:
    """Every constant of GridLife.  Rates are per second; the step is dt seconds."""

    # arena and motion
    arena_size: float = 10.0  # L: the arena is [0, L]^2 metres
    dt: float = 0.1  # seconds per step
    vmax: float = 1.0  # commanded velocity u = vmax * a, a in [-1, 1]^2
    episode_cap: int = 1000  # steps before truncation
    # layout (fixed per config, drawn from layout_seed)
    layout_seed: int = 0
    n_refuel: int = 2
    n_cool: int = 2
    n_repair: int = 1
    paired_stations: bool = True  # each cool station sits beside a refuel station (a service bay)
    station_radius: float = 0.6
    n_hazards: int = 3
    hazard_radius_min: float = 0.8
    hazard_radius_max: float = 1.2
    n_hot_zones: int = 2
    hot_zone_radius: float = 1.2
    layout_gap: float = 0.6  # free space between any two discs of the layout (metres)
    wall_gap: float = 0.4  # free space between any disc of the layout and the walls
    n_tokens: int = 3
    token_radius: float = 0.4
    token_reward: float = 1.0
    start_clearance: float = 0.3  # start positions and tokens keep this far from hazard edges
    # energy: E' = min(1, E - dt*(k_basal + k_effort*|a|^2/2) + dt*rho_refuel*1[p' in refuel])
    k_basal: float = 0.03
    k_effort: float = 0.03
    rho_refuel: float = 0.5
    # temperature: T' = max(0, T + dt*(eta_basal + eta_effort*|a|^2/2 + eta_hot*1[hot]) - dt*rho_cool*1[cool])
    eta_basal: float = 0.02
    eta_effort: float = 0.02
    eta_hot: float = 0.1
    rho_cool: float = 0.5
    # integrity: I' = min(1, I - dt*omega_wear*|a|^2/2 - dt*delta_hazard*1[hazard] + dt*rho_repair*1[repair])
    omega_wear: float = 0.02
    delta_hazard: float = 1.0
    rho_repair: float = 0.5
    # start state: h_0 = setpoints + U(-init_spread, init_spread), clipped into the viable range
    init_spread: float = 0.05
    # homeostat
    setpoints: tuple[float, float, float] = (0.8, 0.4, 1.0)
    drive_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    drive_form: str = "keramati_gutkin"
    drive_n: float = 2.0
    drive_m: float = 2.0
    # observation
    partial_observability: bool = False  # hide the internal variables from the observation

    def __post_init__(self) -> None:
        check_types(self)
        check_at_least(self, _POSITIVE, 0.0, strict=True)
        check_at_least(self, _NON_NEGATIVE, 0.0)
        check_at_least(self, _AT_LEAST_ONE, 1)
        _validate(self)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "GridLifeConfig":
        """Build a config from a parameter dict (e.g. a launch file); unknown keys are refused by name."""
        if not isinstance(params, Mapping):
            raise ValueError(f"params: expected a mapping of field names to values, got {type(params).__name__}")
        known = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in params if key not in known)
        if unknown:
            raise ValueError(f"unknown GridLife parameter(s): {', '.join(unknown)}")
        values = {}
        for name, value in params.items():
            if isinstance(known[name].default, tuple) and isinstance(value, list):
                value = tuple(value)
            values[name] = value
        return cls(**values)

    def to_params(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @property
    def obs_dim(self) -> int:
        return len(obs_names(self))


_POSITIVE = {
    "arena_size", "dt", "vmax", "station_radius", "hazard_radius_min", "hazard_radius_max",
    "hot_zone_radius", "token_radius", "drive_n", "drive_m",
}  # fmt: skip
_NON_NEGATIVE = {
    "layout_gap", "wall_gap", "token_reward", "start_clearance", "k_basal", "k_effort", "rho_refuel",
    "eta_basal", "eta_effort", "eta_hot", "rho_cool", "omega_wear", "delta_hazard", "rho_repair",
    "init_spread", "n_hazards", "n_hot_zones", "n_tokens", "layout_seed",
}  # fmt: skip
_AT_LEAST_ONE = {"episode_cap", "n_refuel", "n_cool", "n_repair"}
# the constants of the internal dynamics: a regime shift (GridLifeBatch.shift_rates) may change these alone
RATE_NAMES: tuple[str, ...] = (
    "k_basal", "k_effort", "rho_refuel", "eta_basal", "eta_effort", "eta_hot", "rho_cool",
    "omega_wear", "delta_hazard", "rho_repair",
)  # fmt: skip


STATION_RATES = ("rho_refuel", "rho_cool", "rho_repair")  # what a station serves, shared among the bodies in it


def crowded_world(world: GridLifeConfig, bodies: int, capacity: float = 1.0) -> GridLifeConfig:
    """The world as a body sees it when `bodies` bodies share a station of `capacity` equally (`step`'s share,
    min(1, capacity / bodies), on every station's rate): the model a per-body shield certifies with, so that its
    backup waits in a crowded station long enough. A grant below the equal share is still served less."""
    if isinstance(bodies, bool) or not isinstance(bodies, int) or bodies < 1:
        raise ValueError(f"bodies: expected an integer >= 1, got {bodies!r}")
    if not capacity > 0:
        raise ValueError(f"capacity: must be > 0, got {capacity!r}")
    share = min(1.0, capacity / bodies)
    return dataclasses.replace(world, **{name: getattr(world, name) * share for name in STATION_RATES})


def _validate(cfg: GridLifeConfig) -> None:
    """Checks that involve more than one field."""
    if cfg.hazard_radius_max < cfg.hazard_radius_min:
        raise ValueError(
            f"hazard_radius_max: must be >= hazard_radius_min ({cfg.hazard_radius_min}), got {cfg.hazard_radius_max}"
        )
    if cfg.dt * cfg.vmax >= cfg.station_radius:
        raise ValueError(
            f"dt: one step at full speed (dt*vmax = {cfg.dt * cfg.vmax}) must be shorter than "
            f"station_radius ({cfg.station_radius}), or stations could be stepped over"
        )
    largest = max(cfg.station_radius, cfg.hazard_radius_max, cfg.hot_zone_radius)
    if 2 * (largest + cfg.wall_gap) >= cfg.arena_size:
        raise ValueError(f"arena_size: {cfg.arena_size} m is too small for discs of radius {largest} m")
    if any(not 0.0 <= s <= 1.0 for s in cfg.setpoints):
        raise ValueError(f"setpoints: each must lie in [0, 1], got {cfg.setpoints}")
    if any(w < 0 for w in cfg.drive_weights):
        raise ValueError(f"drive_weights: must be >= 0, got {cfg.drive_weights}")
    if cfg.drive_form not in DRIVE_FORMS:
        raise ValueError(f"drive_form: must be one of {DRIVE_FORMS}, got {cfg.drive_form!r}")
    if cfg.init_spread >= 0.5:
        raise ValueError(f"init_spread: must be < 0.5, got {cfg.init_spread}")


# ---------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True, eq=False)
class GridLifeLayout:
    """Disc centres (M, 2) and radii (M,) of every feature; arrays are read-only."""

    station_centres: np.ndarray
    station_radii: np.ndarray
    station_kinds: np.ndarray  # index into STATION_KINDS
    hazard_centres: np.ndarray
    hazard_radii: np.ndarray
    hot_centres: np.ndarray
    hot_radii: np.ndarray

    def stations(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """Centres and radii of the stations of one kind ('refuel', 'cool' or 'repair')."""
        if kind not in STATION_KINDS:
            raise ValueError(f"kind: must be one of {STATION_KINDS}, got {kind!r}")
        mask = self.station_kinds == STATION_KINDS.index(kind)
        return self.station_centres[mask], self.station_radii[mask]


@functools.lru_cache(maxsize=32)
def build_layout(cfg: GridLifeConfig) -> GridLifeLayout:
    """Place hazards, stations and hot zones as disjoint discs (gap `layout_gap`) from `layout_seed`.

    Discs are placed one at a time by rejection sampling; a layout that paints itself into a corner is
    started again, from the same generator, so the result depends on `layout_seed` alone.
    """
    rng = np.random.default_rng(cfg.layout_seed)
    kinds = [0] * cfg.n_refuel + [1] * cfg.n_cool + [2] * cfg.n_repair
    # A service bay (refuel + cool side by side) is placed as one disc and split afterwards: separate
    # energy and temperature barriers pulling towards far-apart stations are not jointly viable.
    bays = min(cfg.n_refuel, cfg.n_cool) if cfg.paired_stations else 0
    pair_offset = cfg.station_radius + cfg.layout_gap / 2 + 1e-6
    station_radii = [cfg.station_radius + pair_offset] * bays + [cfg.station_radius] * (len(kinds) - 2 * bays)
    for _ in range(200):
        hazard_radii = rng.uniform(cfg.hazard_radius_min, cfg.hazard_radius_max, size=cfg.n_hazards)
        radii = [
            *hazard_radii.tolist(),
            *station_radii,
            *[cfg.hot_zone_radius] * cfg.n_hot_zones,
        ]
        centres = _place_discs(rng, radii, cfg)
        if centres is not None:
            break
    else:
        raise ValueError(
            f"layout_seed: no layout of {cfg.n_hazards} hazards, {len(kinds)} stations and {cfg.n_hot_zones} "
            f"hot zones fits a {cfg.arena_size} m arena with layout_gap {cfg.layout_gap} m; "
            "use fewer or smaller discs"
        )
    n_hazards, n_stations = cfg.n_hazards, len(kinds)
    if bays:
        placed = centres[n_hazards : n_hazards + len(station_radii)]
        angle = rng.uniform(0.0, 2.0 * np.pi, size=bays)
        offset = pair_offset * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        refuel = [placed[:bays] - offset, placed[bays : bays + cfg.n_refuel - bays]]
        cool = [placed[:bays] + offset, placed[bays + cfg.n_refuel - bays : len(station_radii) - cfg.n_repair]]
        stations = np.concatenate([*refuel, *cool, placed[len(station_radii) - cfg.n_repair :]])
        centres = np.concatenate([centres[:n_hazards], stations, centres[n_hazards + len(station_radii) :]])

    def frozen(values: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        array = np.array(values, dtype=dtype)
        array.setflags(write=False)
        return array

    station_slice = slice(n_hazards, n_hazards + n_stations)
    return GridLifeLayout(
        station_centres=frozen(centres[station_slice]),
        station_radii=frozen(np.full(n_stations, cfg.station_radius)),
        station_kinds=frozen(np.asarray(kinds, dtype=np.int64).reshape(n_stations), np.int64),
        hazard_centres=frozen(centres[:n_hazards]),
        hazard_radii=frozen(hazard_radii),
        hot_centres=frozen(centres[n_hazards + n_stations :]),
        hot_radii=frozen(np.full(cfg.n_hot_zones, cfg.hot_zone_radius)),
    )


def _place_discs(rng: np.random.Generator, radii: list[float], cfg: GridLifeConfig) -> np.ndarray | None:
    """Centres (M, 2) of discs with these radii, pairwise `layout_gap` apart; None if one does not fit."""
    centres = np.zeros((len(radii), 2))
    placed = np.asarray(radii)
    for j, radius in enumerate(radii):
        low, high = cfg.wall_gap + radius, cfg.arena_size - cfg.wall_gap - radius
        candidates = rng.uniform(low, high, size=(256, 2))
        gaps = np.linalg.norm(candidates[:, None, :] - centres[None, :j], axis=-1) - placed[:j] - radius
        fits = np.all(gaps >= cfg.layout_gap, axis=1)
        if not fits.any():
            return None
        centres[j] = candidates[np.argmax(fits)]
    return centres


# ------------------------------------------------------------------------------------ pure dynamics


def next_position(pos: np.ndarray, action: np.ndarray, cfg: GridLifeConfig) -> np.ndarray:
    """p' = clip(p + dt * vmax * a, 0, L)."""
    return np.clip(pos + cfg.dt * cfg.vmax * np.asarray(action, dtype=np.float64), 0.0, cfg.arena_size)


def effort(action: np.ndarray) -> np.ndarray:
    """|a|^2 / 2, in [0, 1] for a in [-1, 1]^2."""
    a = np.asarray(action, dtype=np.float64)
    return 0.5 * np.sum(a * a, axis=-1)


def edge_distance(pos: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Signed distance |p - c_k| - r_k from (..., 2) positions to each of M discs: shape (..., M)."""
    return np.linalg.norm(pos[..., None, :] - centres, axis=-1) - radii


def inside_any(pos: np.ndarray, centres: np.ndarray, radii: np.ndarray, strict: bool = False) -> np.ndarray:
    """1[p inside some disc]: |p - c| <= r (or < r when strict); False when there are no discs."""
    if len(radii) == 0:
        return np.zeros(pos.shape[:-1], dtype=bool)
    d = edge_distance(pos, centres, radii)
    return np.any(d < 0 if strict else d <= 0, axis=-1)


def internal_step(
    internal: np.ndarray,
    pos_next: np.ndarray,
    action: np.ndarray,
    cfg: GridLifeConfig,
    layout: GridLifeLayout | None = None,
) -> np.ndarray:
    """h' = (E', T', I') from h = (E, T, I), the NEW position p' and the action (docs/gridlife.md);
    leading axes broadcast. Computed by kernels.internal_next."""
    layout = build_layout(cfg) if layout is None else layout
    h = np.asarray(internal, dtype=np.float64)
    p = np.asarray(pos_next, dtype=np.float64)
    a = np.asarray(action, dtype=np.float64)
    shape = np.broadcast_shapes(h.shape[:-1], p.shape[:-1], a.shape[:-1])
    flat = [np.ascontiguousarray(np.broadcast_to(x, (*shape, k))).reshape(-1, k) for x, k in ((h, 3), (p, 2), (a, 2))]
    return kernels.internal_batch(*flat, _params(cfg), *_tables(layout)).reshape(*shape, 3)


@functools.lru_cache(maxsize=32)
def _params(cfg: GridLifeConfig) -> np.ndarray:
    return kernels.params(cfg)


@functools.lru_cache(maxsize=32)
def _tables(layout: GridLifeLayout) -> tuple[np.ndarray, ...]:
    return kernels.tables(layout)


def start_box(cfg: GridLifeConfig) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) (3,) of the internal state an episode starts from: setpoints +- init_spread, clipped."""
    setpoints = np.asarray(cfg.setpoints, dtype=np.float64)
    return (np.clip(setpoints - cfg.init_spread, START_LOW, START_HIGH),
            np.clip(setpoints + cfg.init_spread, START_LOW, START_HIGH))  # fmt: skip


def margins(
    pos: np.ndarray,
    internal: np.ndarray,
    cfg: GridLifeConfig,
    layout: GridLifeLayout | None = None,
    hazard: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Named viability margins: energy = E, temperature = 1 - T, integrity = I, hazard = min_k |p-c_k| - r_k.

    The state is viable when energy, temperature and integrity are > 0 and hazard is >= 0. `hazard` may come
    precomputed (kernels.step_batch gives it with the step).
    """
    layout = build_layout(cfg) if layout is None else layout
    h = np.asarray(internal, dtype=np.float64)
    pos = np.asarray(pos, dtype=np.float64)
    if hazard is None:  # without hazards the margin is the arena diagonal, so that it stays finite
        hazard = edge_distance(pos, layout.hazard_centres, layout.hazard_radii).min(axis=-1) \
            if len(layout.hazard_radii) else np.full(pos.shape[:-1], cfg.arena_size * math.sqrt(2.0))
    return {"energy": h[..., 0], "temperature": 1.0 - h[..., 1], "integrity": h[..., 2], "hazard": hazard}


def is_dead(margin: Mapping[str, np.ndarray]) -> np.ndarray:
    """Death: E <= 0, T >= 1 or I <= 0."""
    return (margin["energy"] <= 0) | (margin["temperature"] <= 0) | (margin["integrity"] <= 0)


def is_violation(margin: Mapping[str, np.ndarray], dead: np.ndarray | None = None) -> np.ndarray:
    """A state breaks viability when it is dead (`is_dead`, unless given) or inside a hazard disc."""
    return (is_dead(margin) if dead is None else dead) | (margin["hazard"] < 0)


# ------------------------------------------------------------------------------------- observation


def obs_names(cfg: GridLifeConfig) -> list[str]:
    """Names of the observation components, in order (docs/gridlife.md, "Observation")."""
    names = ["pos_x", "pos_y", "vel_x", "vel_y"]
    for target in (*STATION_KINDS, "hazard", "hot", "token"):
        names += [f"{target}_dx", f"{target}_dy", f"{target}_dist"]
    if not cfg.partial_observability:
        names += list(INTERNAL_NAMES)
    return names


@functools.lru_cache(maxsize=32)
def obs_bounds(cfg: GridLifeConfig) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise (low, high) of the observation, float32."""
    diagonal = math.sqrt(2.0)
    low = [0.0, 0.0, -cfg.vmax, -cfg.vmax]
    high = [1.0, 1.0, cfg.vmax, cfg.vmax]
    for target in (*STATION_KINDS, "hazard", "hot", "token"):
        # station and token distances are to the centre (>= 0); hazard and hot distances to the edge (signed)
        edge = target in ("hazard", "hot")
        low += [-1.0, -1.0, -1.0 if edge else 0.0]
        high += [1.0, 1.0, diagonal]
    if not cfg.partial_observability:
        low += [0.0, 0.0, 0.0]
        high += [1.0, 1.0, 1.0]
    bounds = np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)
    for array in bounds:
        array.setflags(write=False)  # cached: shared by every caller
    return bounds


def observe(
    pos: np.ndarray,
    velocity: np.ndarray,
    internal: np.ndarray,
    tokens: np.ndarray,
    cfg: GridLifeConfig,
    layout: GridLifeLayout | None = None,
) -> np.ndarray:
    """Observation batch (N, obs_dim) float32, computed by kernels.observe_batch.

    From positions (N, 2), commanded velocities u (N, 2), internal state h (N, 3) and tokens (N, K, 2).
    Each feature kind contributes (dx, dy, dist) / L to its nearest disc (to the edge for hazards and
    hot zones, signed), or (0, 0, sqrt 2) when the layout has none.
    """
    layout = build_layout(cfg) if layout is None else layout
    low, high = obs_bounds(cfg)
    arrays = [np.ascontiguousarray(x, dtype=np.float64) for x in (pos, velocity, internal, tokens)]
    return kernels.observe_batch(*arrays, not cfg.partial_observability, low, high, _params(cfg), *_tables(layout))


# ---------------------------------------------------------------------------------------- simulator


class GridLifeBatch:
    """N independent GridLife arenas stepped together; arenas that end are reset automatically."""

    def __init__(self, cfg: GridLifeConfig | None = None, num_envs: int = 1) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs: must be an integer >= 1, got {num_envs!r}")
        self.cfg = GridLifeConfig() if cfg is None else cfg
        self.num_envs = num_envs
        self.layout = build_layout(self.cfg)
        self.homeostat = Homeostat(
            self.cfg.setpoints,
            self.cfg.drive_weights,
            self.cfg.drive_form,
            self.cfg.drive_n,
            self.cfg.drive_m,
        )
        self.obs_names = obs_names(self.cfg)
        self.obs_dim = len(self.obs_names)
        self.obs_low, self.obs_high = obs_bounds(self.cfg)
        self._params, self._tables = _params(self.cfg), _tables(self.layout)
        n, k = num_envs, self.cfg.n_tokens
        self._rngs: list[np.random.Generator] = []
        self._pos = np.zeros((n, 2))
        self._velocity = np.zeros((n, 2))
        self._internal = np.zeros((n, 3))
        self._tokens = np.zeros((n, k, 2))
        self._steps = np.zeros(n, dtype=np.int64)
        self._obs = np.zeros((n, self.obs_dim), np.float32)  # the last observation handed out

    # read-only views of the current state (after any auto-reset), for the shield and the fallback
    @property
    def positions(self) -> np.ndarray:
        return read_only(self._pos)

    @property
    def internal(self) -> np.ndarray:
        return read_only(self._internal)

    @property
    def velocities(self) -> np.ndarray:
        return read_only(self._velocity)

    @property
    def tokens(self) -> np.ndarray:
        return read_only(self._tokens)

    @property
    def episode_steps(self) -> np.ndarray:
        return read_only(self._steps)

    def shift_rates(self, **rates: float) -> None:
        """A regime shift: the internal dynamics take these rates from the next step on (names in RATE_NAMES);
        positions, internal states, tokens and the layout stay as they are."""
        unknown = sorted(set(rates) - set(RATE_NAMES))
        if unknown:
            raise ValueError(f"{unknown[0]}: not a rate of the internal dynamics (one of {', '.join(RATE_NAMES)})")
        self.cfg = dataclasses.replace(self.cfg, **rates)  # checked like any config
        self._params = _params(self.cfg)

    def margins(self) -> dict[str, np.ndarray]:
        return margins(self._pos, self._internal, self.cfg, self.layout)

    def observe(self) -> np.ndarray:
        return kernels.observe_batch(self._pos, self._velocity, self._internal, self._tokens,
                                     not self.cfg.partial_observability, self.obs_low, self.obs_high,
                                     self._params, *self._tables)  # fmt: skip

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every arena; arena i draws from its own generator, spawned from `seed`."""
        self._rngs = arena_rngs(seed, self.num_envs, self._rngs)
        for i in range(self.num_envs):
            self._reset_arena(i)
        self._obs = self.observe()
        return self._obs

    def step(self, actions: np.ndarray) -> StepResult:
        if not self._rngs:
            raise RuntimeError("GridLifeBatch.step called before reset")
        action = self._checked_actions(actions)
        cfg = self.cfg
        internal = self._internal
        pos_next, internal_next, hits, hazard = kernels.step_batch(
            self._pos, internal, action, self._tokens, cfg.token_radius, self._params, *self._tables)
        homeo_reward = self.homeostat.reward(internal, internal_next)
        tokens = hits.sum(axis=1).astype(np.int64)
        task_reward = self._collect_tokens(hits)
        # the simulator state gets its own copies: auto-reset below rewrites it in place
        self._pos = pos_next.copy()
        self._velocity = cfg.vmax * action
        self._internal = internal_next.copy()
        self._steps = self._steps + 1
        margin = margins(pos_next, internal_next, cfg, self.layout, hazard=hazard)
        terminated = is_dead(margin)
        truncated = ~terminated & (self._steps >= cfg.episode_cap)
        next_obs = self.observe()
        episode_steps = self._steps.copy()
        done = terminated | truncated
        ended = done.any()
        if ended:
            for i in np.flatnonzero(done):
                self._reset_arena(int(i))
        obs, self._obs = self._obs, self.observe() if ended else next_obs
        return StepResult(
            obs=obs,
            next_obs=next_obs,
            reset_obs=self._obs,
            internal=internal,
            next_internal=internal_next,
            next_positions=pos_next,
            task_reward=task_reward,
            tokens=tokens,
            homeo_reward=homeo_reward,
            terminated=terminated,
            truncated=truncated,
            violation=is_violation(margin, dead=terminated),
            margins=margin,
            episode_steps=episode_steps,
        )

    def _checked_actions(self, actions: np.ndarray) -> np.ndarray:
        """Refuse actions that must never reach the dynamics, naming the first offending arena."""
        a = np.asarray(actions)
        if a.shape != (self.num_envs, 2):
            raise ValueError(f"actions: expected shape ({self.num_envs}, 2), got {a.shape}")
        if a.dtype.kind not in "fiu":
            raise ValueError(f"actions: expected real numbers, got dtype {a.dtype}")
        a = a.astype(np.float64)
        if not (np.abs(a) <= 1.0).all():  # one pass for the common case: NaN and inf fail it too
            finite = np.isfinite(a).all(axis=1)
            if not finite.all():
                i, reason = int(np.flatnonzero(~finite)[0]), "is not finite"
            else:
                i, reason = int(np.flatnonzero((np.abs(a) > 1.0).any(axis=1))[0]), "is outside [-1, 1]"
            raise ValueError(f"actions: arena {i}: action {a[i].tolist()} {reason}")
        return a

    def _collect_tokens(self, hits: np.ndarray) -> np.ndarray:
        """Reward the tokens reached (an (N, K) mask) and put each one back somewhere free."""
        if not hits.any():
            return np.zeros(self.num_envs)
        for i, k in zip(*np.nonzero(hits), strict=True):
            self._tokens[i, k] = self._free_positions(self._rngs[i], 1, avoid_stations=True)[0]
        return hits.sum(axis=1) * self.cfg.token_reward

    def _reset_arena(self, i: int) -> None:
        cfg, rng = self.cfg, self._rngs[i]
        self._pos[i] = self._free_positions(rng, 1, avoid_stations=False)[0]
        self._velocity[i] = 0.0
        start = np.asarray(cfg.setpoints) + rng.uniform(-cfg.init_spread, cfg.init_spread, size=3)
        self._internal[i] = np.clip(start, START_LOW, START_HIGH)
        if cfg.n_tokens:
            self._tokens[i] = self._free_positions(rng, cfg.n_tokens, avoid_stations=True)
        self._steps[i] = 0

    def _free_positions(self, rng: np.random.Generator, count: int, avoid_stations: bool) -> np.ndarray:
        return free_positions(rng, self.cfg, self.layout, count, avoid_stations)


def arena_rngs(seed: int | None, num_envs: int, current: list[np.random.Generator]) -> list[np.random.Generator]:
    """One generator per arena, spawned from ``seed``; with no seed, the ``current`` ones go on (fresh ones when
    there are none yet)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0):
        raise ValueError(f"seed: must be a non-negative integer or None, got {seed!r}")
    if seed is None and current:
        return current
    entropy = None if seed is None else int(seed)
    return [np.random.default_rng(child) for child in np.random.SeedSequence(entropy).spawn(num_envs)]


def free_positions(
    rng: np.random.Generator,
    cfg: GridLifeConfig,
    layout: GridLifeLayout,
    count: int,
    avoid_stations: bool,
    bodies: np.ndarray | None = None,
    body_gap: float = 0.0,
) -> np.ndarray:
    """`count` uniform positions at least `start_clearance` outside every hazard (and station), and at least
    `body_gap` from each of `bodies` (M, 2) (multi-agent GridLife's other bodies)."""
    found: list[np.ndarray] = []
    for _ in range(1000):
        candidates = rng.uniform(0.0, cfg.arena_size, size=(64, 2))
        ok = ~inside_any(candidates, layout.hazard_centres, layout.hazard_radii + cfg.start_clearance)
        if avoid_stations:
            ok &= ~inside_any(candidates, layout.station_centres, layout.station_radii)
        if bodies is not None and len(bodies):
            ok &= np.linalg.norm(candidates[:, None] - bodies[None], axis=-1).min(axis=1) >= body_gap
        found.extend(candidates[ok])
        if len(found) >= count:
            return np.asarray(found[:count])
    raise ValueError("start_clearance: no free position found; the hazards cover the arena")


def read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view: what the simulator hands out, and what a decoded message carries (numba types it apart)."""
    view = array.view()
    view.setflags(write=False)
    return view
