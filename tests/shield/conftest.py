"""Shared fixtures for the shield tests: the default GridLife config and its barriers."""

import numpy as np
import pytest

from nodes.env.gridlife import GridLifeConfig
from nodes.shield.barriers import GridLifeBarriers
from nodes.shield.core import ShieldCore
from tests.torch_threads import single_torch_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="session")
def env_cfg() -> GridLifeConfig:
    return GridLifeConfig()


@pytest.fixture(scope="session")
def barriers(env_cfg: GridLifeConfig) -> GridLifeBarriers:
    return GridLifeBarriers(env_cfg)


def safe_states(barriers: GridLifeBarriers, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n random states with every barrier >= 0, half of them drawn near stations, hot zones and hazards."""
    rng = np.random.default_rng(seed)
    lay = barriers.layout
    discs = np.concatenate([lay.station_centres, lay.hot_centres, lay.hazard_centres])
    radii = np.concatenate([lay.station_radii, barriers.hot_reach, lay.hazard_radii])
    pos_out, h_out = [], []
    while sum(len(p) for p in pos_out) < n:
        m = 4 * n
        pos = rng.uniform(0.0, barriers.env_cfg.arena_size, size=(m, 2))
        near = rng.random(m) < 0.5
        k = rng.integers(len(discs), size=m)
        angle = rng.uniform(0, 2 * np.pi, size=m)
        r = radii[k] * rng.uniform(0.0, 1.4, size=m)
        ring = discs[k] + r[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        pos = np.clip(np.where(near[:, None], ring, pos), 0.0, barriers.env_cfg.arena_size)
        h = rng.uniform(0.0, 1.0, size=(m, 3))
        keep = barriers.values(pos, h).min(axis=1) >= 0.0
        pos_out.append(pos[keep])
        h_out.append(h[keep])
    return np.concatenate(pos_out)[:n], np.concatenate(h_out)[:n]


def on_hazard_edge(core: ShieldCore, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A position on hazard k's boundary facing outward from its centre, and the action straight into it."""
    lay = core.layout
    centre, radius = lay.hazard_centres[k], lay.hazard_radii[k]
    station = lay.station_centres[np.argmin(np.linalg.norm(lay.station_centres - centre, axis=1))]
    n = (station - centre) / np.linalg.norm(station - centre)
    return centre + (radius + 1e-9) * n, -n
