"""Search filter for a Box action space of any dimension over a user's model `(state, action) -> (next_state,
margins)`: the closest candidate action (in env units) whose predicted margins are all >= 0.

Candidates, in agent units [-1, 1]^d: the proposal, the proposal shrunk towards the box centre, the centre,
the 2d face centres (each axis at its bound, the others at the proposal's value), the 2^d corners up to
MAX_CORNER_DIM dimensions and `n_random` fixed uniform actions. They are tried in order of distance from the
proposal, so the first safe one is the answer and a safe proposal costs one model call. Each candidate is
judged as the float32 action the env executes, scaled onto the box (`BoxQP.executed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nodes.shield.box_qp import BoxQP
from nodes.shield.description import Model

SHRINK = (0.75, 0.5, 0.25)
MAX_CORNER_DIM = 6  # 64 corners; beyond, the faces and the random candidates only


@dataclass(frozen=True)
class SearchResult:
    action: np.ndarray  # (d,) float32; zeros where none was safe
    feasible: bool
    margin_before: float  # smallest predicted margin at the proposal
    margin_after: float  # smallest predicted margin at the action (nan where none was safe)
    binding: int  # index of the smallest margin at the action (-1 where none was safe)
    calls: int  # model calls made


class ModelSearch:
    def __init__(self, box: BoxQP, model: Model | None, n_random: int = 64, seed: int = 0) -> None:
        """`model` None: candidates only (the learned filter judges them itself)."""
        if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
            raise ValueError(f"n_random: must be an integer >= 0, got {n_random!r}")
        self.box, self.model = box, model
        fixed = np.random.default_rng(seed).uniform(-1.0, 1.0, (n_random, box.dim))
        if box.dim <= MAX_CORNER_DIM:
            corners = ((np.arange(2**box.dim)[:, None] >> np.arange(box.dim)) & 1) * 2.0 - 1.0
            fixed = np.concatenate([corners, fixed])
        self.fixed = fixed

    def candidates(self, proposal: np.ndarray) -> np.ndarray:
        """(K, d) float32 candidates, nearest to the proposal first (the proposal itself first)."""
        d = self.box.dim
        faces = np.repeat(proposal[None, :], 2 * d, axis=0)
        faces[np.arange(d), np.arange(d)] = -1.0
        faces[d + np.arange(d), np.arange(d)] = 1.0
        cands = np.concatenate([proposal[None, :], np.multiply.outer(SHRINK, proposal), np.zeros((1, d)),
                                faces, self.fixed]).astype(np.float32)
        dist = (((cands - proposal[None, :]) * self.box.half[None, :]) ** 2).sum(axis=1)
        return cands[np.argsort(dist, kind="stable")]

    def search(self, state: np.ndarray, a_ref: np.ndarray) -> SearchResult:
        assert self.model is not None
        proposal = np.minimum(np.maximum(np.asarray(a_ref, np.float64), -1.0), 1.0).astype(np.float32)
        before = float("nan")
        for calls, cand in enumerate(self.candidates(proposal), start=1):
            _, margins = self.model(state, self.box.executed(cand))
            if calls == 1:
                before = float(margins.min())
            if (margins >= 0).all():
                return SearchResult(cand, True, before, float(margins.min()), int(margins.argmin()), calls)
        return SearchResult(np.zeros(self.box.dim, np.float32), False, before, float("nan"), -1, calls)
