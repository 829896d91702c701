"""Close pairs from a spatial grid, and the groups they join: the coupler's cost follows close pairs, not N^2.

A pair (i, j) can only break its separation row in one step when gamma * h_ij < (s_i + s_j) * sqrt 2 (the
most the two can close in one step, docs/coupler.md), i.e. when the centres are closer than
`min_separation + (s_i + s_j) * sqrt 2 / gamma`. Positions are hashed to square cells of that size; only
the 3x3 block of cells around an agent can hold such a partner. Sorting by cell costs O(N log N); the rest
is O(N + candidate pairs).
"""

from __future__ import annotations

import math

import numba
import numpy as np


def reach(min_separation: float, step_len: np.ndarray, gamma: float) -> float:
    """Centre distance beyond which no pair needs a row (with the fastest two agents)."""
    top = np.sort(np.asarray(step_len, dtype=np.float64))[-2:].sum() if len(step_len) > 1 else 0.0
    return float(min_separation + top * math.sqrt(2.0) / gamma) + 1e-9


@numba.njit(cache=True)
def close_pairs(pos, step_len, min_separation, gamma, cell):  # type: ignore[no-untyped-def]
    """(K, 2) index pairs i < j whose separation row can bind this step; `cell` >= reach(...)."""
    n = pos.shape[0]
    cx = np.empty(n, dtype=np.int64)
    cy = np.empty(n, dtype=np.int64)
    for i in range(n):
        cx[i] = np.int64(math.floor(pos[i, 0] / cell))
        cy[i] = np.int64(math.floor(pos[i, 1] / cell))
    lo_x = cx.min() if n else 0
    lo_y = cy.min() if n else 0
    width = (cy.max() - lo_y + 3) if n else 1
    key = (cx - lo_x + 1) * width + (cy - lo_y + 1)
    order = np.argsort(key)
    keys = key[order]
    out = np.empty((max(16, 4 * n), 2), dtype=np.int64)
    count = 0
    root2 = math.sqrt(2.0)
    for i in range(n):
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                k = key[i] + dx * width + dy
                start = np.searchsorted(keys, k)
                for idx in range(start, n):
                    if keys[idx] != k:
                        break
                    j = order[idx]
                    if j <= i:
                        continue
                    ddx = pos[i, 0] - pos[j, 0]
                    ddy = pos[i, 1] - pos[j, 1]
                    h = math.sqrt(ddx * ddx + ddy * ddy) - min_separation
                    if gamma * h < (step_len[i] + step_len[j]) * root2 + 1e-12:
                        if count == out.shape[0]:
                            grown = np.empty((2 * count, 2), dtype=np.int64)
                            grown[:count] = out
                            out = grown
                        out[count, 0], out[count, 1] = i, j
                        count += 1
    return out[:count].copy()


@numba.njit(cache=True)
def groups(n, pairs):  # type: ignore[no-untyped-def]
    """Connected components of the pair graph: label (n,) from 0, agents without pairs get -1."""
    parent = np.arange(n)
    for k in range(pairs.shape[0]):
        a, b = pairs[k, 0], pairs[k, 1]
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a != b:
            parent[max(a, b)] = min(a, b)
    label = np.full(n, -1, dtype=np.int64)
    paired = np.zeros(n, dtype=np.bool_)
    for k in range(pairs.shape[0]):
        paired[pairs[k, 0]] = True
        paired[pairs[k, 1]] = True
    next_label = 0
    root_label = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        if not paired[i]:
            continue
        r = i
        while parent[r] != r:
            r = parent[r]
        if root_label[r] < 0:
            root_label[r] = next_label
            next_label += 1
        label[i] = root_label[r]
    return label
