"""Engine of the env node kind `gym`: N copies of any registered Gymnasium environment, stepped together.

Viability constraints come from a spec string `module:function` or `path/to/file.py:function`; the
function maps one arena's `(obs, info)` to a dict of named margins, each >= 0 when viable.  The batch
interface mirrors GridLifeBatch: arenas that end are reset automatically; both return a
`nodes.env.step.StepResult`.
"""

import importlib
import importlib.util
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from nodes.env.step import StepResult

ConstraintFn = Callable[[np.ndarray, dict[str, Any]], Mapping[str, float]]


class ConstraintError(ValueError):
    """A constraint spec that cannot be loaded, or a constraint function that returned bad margins."""


def load_constraint(spec: str) -> ConstraintFn:
    """Resolve `module:function` or `path/to/file.py:function` to the function it names."""
    if not isinstance(spec, str) or spec.count(":") < 1:
        raise ConstraintError(f"constraint {spec!r}: expected 'module:function' or 'path/to/file.py:function'")
    location, _, name = spec.rpartition(":")
    if not location or not name.isidentifier():
        raise ConstraintError(f"constraint {spec!r}: expected 'module:function' or 'path/to/file.py:function'")
    if location.endswith(".py") or "/" in location:
        module = _load_file(spec, Path(location))
    else:
        try:
            module = importlib.import_module(location)
        except Exception as error:  # any import failure is reported the same way, with its reason
            raise ConstraintError(f"constraint {spec!r}: cannot import module {location!r}: {error}") from error
    function = getattr(module, name, None)
    if function is None:
        raise ConstraintError(f"constraint {spec!r}: {location!r} has no attribute {name!r}")
    if not callable(function):
        raise ConstraintError(f"constraint {spec!r}: {location}:{name} is not callable")
    return function


def _load_file(spec: str, path: Path) -> Any:
    if not path.is_file():
        raise ConstraintError(f"constraint {spec!r}: file {str(path)!r} does not exist")
    module_name = f"persist_constraint_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConstraintError(f"constraint {spec!r}: {str(path)!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:
        raise ConstraintError(f"constraint {spec!r}: executing {str(path)!r} failed: {error}") from error
    sys.modules[module_name] = module
    return module


class ConstraintMargins(gymnasium.Wrapper):
    """Adds the viability margins of each state to its info, ``info["margins"]`` (an array in the order of
    ``names``; the vector env stacks arrays cheaply): the constraint function is called on every reset and step,
    and what it returns is checked here."""

    def __init__(self, env: gymnasium.Env, constraint: ConstraintFn, spec: str) -> None:
        super().__init__(env)
        self.constraint, self.constraint_spec = constraint, spec
        self.names: tuple[str, ...] | None = None  # the margin names of the first call; later calls must match

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "margins": np.fromiter(self.evaluate(obs, info).values(), np.float64)}

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        margins = np.fromiter(self.evaluate(obs, info).values(), np.float64)
        return obs, reward, terminated, truncated, {**info, "margins": margins}

    def evaluate(self, obs: np.ndarray, info: dict[str, Any]) -> dict[str, float]:
        spec = self.constraint_spec
        try:
            result = self.constraint(obs, info)
        except Exception as error:
            raise ConstraintError(f"constraint {spec!r}: raised {type(error).__name__}: {error}") from error
        if not isinstance(result, Mapping) or not result:
            raise ConstraintError(f"constraint {spec!r}: must return a non-empty dict of margins, got {result!r}")
        margins: dict[str, float] = {}
        for name, value in result.items():
            if not isinstance(name, str):
                raise ConstraintError(f"constraint {spec!r}: margin names must be strings, got {name!r}")
            try:
                number = float(value)
            except (TypeError, ValueError) as error:
                raise ConstraintError(f"constraint {spec!r}: margin {name!r} is not a number: {value!r}") from error
            if not math.isfinite(number):
                raise ConstraintError(f"constraint {spec!r}: margin {name!r} is not finite: {value!r}")
            margins[name] = number
        names = tuple(margins)
        if self.names is None:
            self.names = names
        elif names != self.names:
            raise ConstraintError(f"constraint {spec!r}: returned margins {list(names)}, earlier {list(self.names)}")
        return margins


class GymBatch:
    """`num_envs` copies of the Gymnasium environment `env_id`, with optional viability constraints: a
    `gymnasium.vector.SyncVectorEnv` (same-step auto-reset) of `ConstraintMargins`-wrapped copies."""

    def __init__(
        self,
        env_id: str,
        num_envs: int = 1,
        constraint: str | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs: must be an integer >= 1, got {num_envs!r}")
        if not isinstance(env_id, str) or env_id not in gymnasium.registry:
            raise ValueError(f"env_id: {env_id!r} is not a registered Gymnasium environment")
        self.env_id = env_id
        self.num_envs = num_envs
        self.constraint_spec = constraint
        check = load_constraint(constraint) if constraint is not None else None
        kwargs = dict(env_kwargs or {})

        def make() -> gymnasium.Env:
            env = gymnasium.make(env_id, **kwargs)
            return env if check is None else ConstraintMargins(env, check, str(constraint))

        try:
            self._vec = SyncVectorEnv([make for _ in range(num_envs)], autoreset_mode=AutoresetMode.SAME_STEP,
                                      copy=False)  # step() copies what it keeps
        except Exception as error:
            raise ValueError(f"env_id: cannot make {env_id!r}: {error}") from error
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        if not isinstance(self.observation_space, spaces.Box):
            raise ValueError(
                f"env_id: {env_id!r} has a {type(self.observation_space).__name__} observation space; "
                "only Box is supported (flatten it with a wrapper)"
            )
        if not isinstance(self.action_space, spaces.Box | spaces.Discrete):
            raise ValueError(
                f"env_id: {env_id!r} has a {type(self.action_space).__name__} action space; "
                "only Box and Discrete are supported"
            )
        self._obs = np.zeros((num_envs, *self.observation_space.shape), dtype=np.float32)
        self._margins: dict[str, np.ndarray] = {}
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._started = False

    @property
    def margin_names(self) -> tuple[str, ...]:
        return tuple(self._margins)

    def margins(self) -> dict[str, np.ndarray]:
        """Margins of the current state of every arena."""
        return {name: values.copy() for name, values in self._margins.items()}

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every arena; arena i is seeded from `seed` through its own spawned seed sequence."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0):
            raise ValueError(f"seed: must be a non-negative integer or None, got {seed!r}")
        seeds: list[int | None] = [None] * self.num_envs
        if seed is not None:
            children = np.random.SeedSequence(int(seed)).spawn(self.num_envs)
            seeds = [int(child.generate_state(1)[0]) for child in children]
        obs, info = self._vec.reset(seed=seeds)
        self._obs = np.asarray(obs, dtype=np.float32).copy()  # a new array: the last step's result keeps its own
        self._margins = self._stack(info)
        self._steps[:] = 0
        self._started = True
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> StepResult:
        if not self._started:
            raise RuntimeError("GymBatch.step called before reset")
        obs, reward, terminated, truncated, info = self._vec.step(self._checked_actions(actions))
        done = terminated | truncated
        reset_obs = np.asarray(obs, dtype=np.float32).copy()
        next_obs, margins = reset_obs.copy(), self._stack(info)
        self._steps += 1
        episode_steps = self._steps.copy()
        self._steps[done] = 0
        self._margins = {name: values.copy() for name, values in margins.items()}
        if done.any():  # the state each ended arena reached, before its reset
            final = self._stack(info["final_info"]) if margins else {}
            for i in np.flatnonzero(done):
                next_obs[i] = info["final_obs"][i]
                for name in margins:
                    margins[name][i] = final[name][i]
        violation = np.zeros(self.num_envs, dtype=bool)
        for values in margins.values():
            violation |= values < 0
        obs_before, self._obs = self._obs, reset_obs
        return StepResult(
            obs=obs_before,
            next_obs=next_obs,
            reset_obs=reset_obs.copy(),
            task_reward=np.asarray(reward, dtype=np.float64),
            homeo_reward=np.zeros(self.num_envs),
            terminated=np.asarray(terminated, dtype=bool),
            truncated=np.asarray(truncated, dtype=bool),
            violation=violation,
            margins=margins,
            episode_steps=episode_steps,
        )

    def close(self) -> None:
        self._vec.close()

    def _stack(self, info: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The margins in the vector env's merged info (n, k), by name; every arena must name them alike."""
        if self.constraint_spec is None:
            return {}
        names = [env.names for env in self._vec.envs]  # type: ignore[attr-defined]
        for i, arena_names in enumerate(names):
            if arena_names != names[0]:
                raise ConstraintError(f"constraint {self.constraint_spec!r}: arena {i} returned margins "
                                      f"{list(arena_names)}, arena 0 {list(names[0])}")
        values = np.asarray(info["margins"], dtype=np.float64)
        return {name: values[:, k].copy() for k, name in enumerate(names[0])}

    def _checked_actions(self, actions: np.ndarray) -> list[Any]:
        """Refuse actions that must never reach the environment, naming the first offending arena."""
        a = np.asarray(actions)
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            if a.shape != (self.num_envs,):
                raise ValueError(f"actions: expected shape ({self.num_envs},), got {a.shape}")
            if not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"actions: a Discrete action space needs integers, got dtype {a.dtype}")
            bad = (a < space.start) | (a >= space.start + space.n)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"actions: arena {i}: action {a[i]} is outside {space}")
            return a.astype(np.int64)
        if a.shape != (self.num_envs, *space.shape):
            raise ValueError(f"actions: expected shape {(self.num_envs, *space.shape)}, got {a.shape}")
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise ValueError(f"actions: expected real numbers, got dtype {a.dtype}")
        flat = a.reshape(self.num_envs, -1).astype(np.float64)
        finite = np.isfinite(flat).all(axis=1)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"actions: arena {i}: action {a[i].tolist()} is not finite")
        low = space.low.reshape(1, -1)
        high = space.high.reshape(1, -1)
        in_range = ((flat >= low) & (flat <= high)).all(axis=1)
        if not in_range.all():
            i = int(np.flatnonzero(~in_range)[0])
            raise ValueError(f"actions: arena {i}: action {a[i].tolist()} is outside {space}")
        return a.astype(space.dtype)
