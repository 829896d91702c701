"""A user's description of safety for any Box-action environment, loaded from `module:function` or
`path/file.py:function` (the loader the env's constraint margins use) and called through checks.

Three kinds of function, all in the env's own action units:

- rows `(obs) -> (A, b)`: the safe set of this step is `A u <= b`, A of shape (R, act_dim), b (R,);
- model `(state, action) -> (next_state, margins)`: margins (M,) of the predicted next state, safe when all >= 0;
- backup `(obs) -> action`: an action (act_dim,) to execute when the filter finds none.

Whatever a call returns is checked here (shape, finite numbers); a call that raises or returns something else
raises `DescriptionError` naming the spec, which the shield counts and answers with the declared fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nodes.env.gym_adapter import ConstraintError, load_constraint


class DescriptionError(ValueError):
    """A description function that cannot be loaded, raised, or returned something unusable."""

    def __init__(self, spec: str, reason: str) -> None:
        super().__init__(f"{spec}: {reason}")
        self.spec, self.reason = spec, reason


def load_description(spec: str) -> Callable[..., Any]:
    try:
        return load_constraint(spec)
    except ConstraintError as error:
        raise DescriptionError(spec, str(error)) from error


def _call(spec: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as error:  # a user's function may raise anything: it is reported, never propagated
        raise DescriptionError(spec, f"raised {type(error).__name__}: {error}") from error


def _array(spec: str, what: str, value: Any, shape: tuple[int | None, ...]) -> np.ndarray:
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DescriptionError(spec, f"{what} is not an array of numbers: {error}") from error
    if out.ndim != len(shape) or any(want is not None and got != want for got, want in zip(out.shape, shape,
                                                                                             strict=True)):
        expected = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise DescriptionError(spec, f"{what} has shape {out.shape}, expected {expected}")
    if not np.isfinite(out).all():
        raise DescriptionError(spec, f"{what} is not finite")
    return out


class Rows:
    """Checked calls of an affine barrier-rows function."""

    def __init__(self, spec: str, act_dim: int) -> None:
        self.spec, self.act_dim, self.fn = spec, act_dim, load_description(spec)

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = _call(self.spec, self.fn, obs)
        if not isinstance(result, tuple | list) or len(result) != 2:
            raise DescriptionError(self.spec, f"must return (A, b), got {type(result).__name__}")
        A = _array(self.spec, "A", result[0], (None, self.act_dim))
        b = _array(self.spec, "b", result[1], (A.shape[0],))
        return A, b


class Model:
    """Checked calls of a model `(state, action) -> (next_state, margins)`; the number of margins is fixed by
    the first call."""

    def __init__(self, spec: str) -> None:
        self.spec, self.fn = spec, load_description(spec)
        self.n_margins: int | None = None

    def __call__(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = _call(self.spec, self.fn, state, action)
        if not isinstance(result, tuple | list) or len(result) != 2:
            raise DescriptionError(self.spec, f"must return (next_state, margins), got {type(result).__name__}")
        next_state = _array(self.spec, "next_state", result[0], (None,) * np.ndim(result[0]))
        margins = _array(self.spec, "margins", result[1], (self.n_margins,))
        if margins.size == 0:
            raise DescriptionError(self.spec, "margins is empty")
        if self.n_margins is None:
            self.n_margins = margins.size
        return next_state, margins


class Backup:
    """Checked calls of a backup policy `(obs) -> action` (env units, inside the action box)."""

    def __init__(self, spec: str, low: np.ndarray, high: np.ndarray) -> None:
        self.spec, self.low, self.high, self.fn = spec, low, high, load_description(spec)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        action = _array(self.spec, "action", _call(self.spec, self.fn, obs), self.low.shape)
        if not ((action >= self.low) & (action <= self.high)).all():
            raise DescriptionError(self.spec, f"action {action.tolist()} is outside the action box")
        return action
