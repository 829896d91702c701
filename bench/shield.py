"""Shield latency per decision: p50/p99 in microseconds of ShieldCore.step for each filter at batch 1 and 64.

Workload: GridLife states inside the safe set, half of them near stations, hot zones and hazards, with
proposals that each violate at least one barrier row, so every decision has to project (the case the
filter cost matters for). Baseline in the same run: closed-form projection onto the single most
violated half-space. Prints one JSON line; keys `latency_us.<filter>.<batch>.{p50,p99}`.
`qp_block` is the QP filter with one block-diagonal OSQP problem per batch instead of one per arena.
These per-filter figures are measured with the rollout gatekeeper off (the states are random, many of them
not recoverable, which is not where the gatekeeper runs); its cost is measured in closed loop instead:
`latency_us.closed_loop.{gatekeeper,no_gatekeeper}.16` time ShieldCore.step (qp) for 16 GridLife arenas
fed random proposals, both in this run. `closed_loop.adversarial` counts executed violations over
layouts 0-4 with random, constant, into-hazard, against-the-backup and bang-bang proposals (32 arenas,
`--closed-loop-steps` each), and `closed_loop.scripted` gives the pass share and tokens per arena and
1000 steps of the scripted station keeper proposed through the shield, against the same policy unshielded.

    .venv/bin/python bench/shield.py [--decisions 1000] [--decisions-64 200] [--closed-loop-steps 5000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig
from nodes.env.scripted import seek_station_policy
from nodes.shield.backup import BackupConfig
from nodes.shield.barriers import GridLifeBarriers
from nodes.shield.core import ShieldConfig, ShieldCore
from nodes.shield.filters import AmortisedConfig
from nodes.shield.qp import QPConfig
from nodes.shield.state import STATE_NAMES, state_matrix
from nodes.shield.viability import ViabilityNet, fit_viability
from protocols import MODE_NAMES, MODE_PASS

BATCHES = (1, 64)


def workload(barriers: GridLifeBarriers, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n (position, internal, proposal) triples: safe states, proposals that break at least one row."""
    rng = np.random.default_rng(seed)
    lay = barriers.layout
    discs = np.concatenate([lay.station_centres, lay.hot_centres, lay.hazard_centres])
    radii = np.concatenate([lay.station_radii, barriers.hot_reach, lay.hazard_radii])
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    while sum(len(o[0]) for o in out) < n:
        m = 20 * n
        k = rng.integers(len(discs), size=m)
        angle = rng.uniform(0, 2 * np.pi, size=m)
        ring = discs[k] + (radii[k] * rng.uniform(0.9, 1.3, size=m))[:, None] * np.column_stack(
            [np.cos(angle), np.sin(angle)]
        )
        pos = np.where(rng.random(m)[:, None] < 0.5, ring, rng.uniform(0, 10, size=(m, 2)))
        pos = np.clip(pos, 0, barriers.env_cfg.arena_size)
        h = rng.uniform(0, 1, size=(m, 3))
        a = rng.uniform(-1, 1, size=(m, 2))
        rows = barriers.constraints(pos, h)
        safe = rows.values.min(axis=1) >= 0
        unsafe_proposal = np.any(np.einsum("nrk,nk->nr", rows.A, a) < rows.b, axis=1)
        keep = safe & unsafe_proposal
        out.append((pos[keep], h[keep], a[keep]))
    return tuple(np.concatenate([o[i] for o in out])[:n] for i in range(3))  # type: ignore[return-value]


def percentiles(samples: list[float]) -> dict[str, float]:
    us = np.asarray(samples) * 1e6
    return {"p50": round(float(np.percentile(us, 50)), 1), "p99": round(float(np.percentile(us, 99)), 1)}


def timed(fn: Callable[[int], object], decisions: int, warmup: int = 20) -> list[float]:
    for i in range(warmup):
        fn(i)
    samples = []
    for i in range(decisions):
        t0 = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t0)
    return samples


def halfspace_baseline(barriers: GridLifeBarriers) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Project onto the most violated row only: a - min(0, n.a - b) n / |n|^2 (no guarantee for the rest)."""

    def project(pos: np.ndarray, h: np.ndarray, a: np.ndarray) -> np.ndarray:
        rows = barriers.constraints(pos, h)
        viol = np.einsum("nrk,nk->nr", rows.A, a) - rows.b
        i = np.argmin(viol, axis=1)
        n = rows.A[np.arange(len(a)), i]
        step = np.minimum(viol[np.arange(len(a)), i], 0.0) / np.maximum((n * n).sum(axis=1), 1e-12)
        return np.clip(a - step[:, None] * n, -1, 1).astype(np.float32)

    return project


def ensemble_models(barriers: GridLifeBarriers, k: int) -> list[ViabilityNet]:
    """K viability networks fitted (briefly, different seeds) to the smallest internal barrier value."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 10, size=(8000, 2))
    h = rng.uniform(0, 1, size=(8000, 3))
    margin = barriers.values(pos, h)[:, -3:].min(axis=1)
    nets = []
    for seed in range(k):
        net = ViabilityNet(STATE_NAMES, [0, 0, 0, 0, 0], [10, 10, 1, 1, 1], hidden=(32, 32))
        fit_viability(net, state_matrix(pos, h), margin, epochs=800, seed=seed, target_false_safe=0.02)
        nets.append(net)
    return nets


ADVERSARIES = ("random", "constant", "into_hazard", "against_backup", "bang_bang")


def adversarial_proposals(
    core: ShieldCore, sim: GridLifeBatch, rng: np.random.Generator, held: np.ndarray
) -> np.ndarray:
    """Arena i proposes with ADVERSARIES[i % 5]; `held` carries the bang-bang corners between steps."""
    n = sim.num_envs
    lay = core.layout
    gap = np.linalg.norm(sim.positions[:, None] - lay.hazard_centres, axis=-1) - lay.hazard_radii
    to = lay.hazard_centres[np.argmin(gap, axis=1)] - sim.positions
    switch = rng.random(n) < 0.05
    held[switch] = rng.choice([-1.0, 1.0], size=(int(switch.sum()), 2))
    assert core.gatekeeper is not None
    kinds = [
        rng.uniform(-1, 1, size=(n, 2)),
        np.tile([[1.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, -1.0]], (n // 4 + 1, 1))[:n],
        np.clip(1.5 * to / np.linalg.norm(to, axis=1, keepdims=True), -1, 1),
        -core.gatekeeper.actions(sim.positions, sim.internal).astype(np.float64),
        held.copy(),
    ]
    return np.stack(kinds, axis=1)[np.arange(n), np.arange(n) % len(kinds)]


def closed_loop(steps: int) -> dict[str, object]:
    """Executed violations under adversarial proposals, the gatekeeper's cost, and a good policy's tokens."""
    out: dict[str, object] = {}
    violations, backups, uncertified = 0, 0, 0
    for layout_seed in range(5):
        cfg = GridLifeConfig(layout_seed=layout_seed)
        sim = GridLifeBatch(cfg, 32)
        sim.reset(seed=layout_seed)
        core = ShieldCore(cfg, ShieldConfig())
        rng = np.random.default_rng(layout_seed)
        held = rng.choice([-1.0, 1.0], size=(32, 2))
        for step in range(steps):
            d = core.step(step, sim.positions, sim.internal, adversarial_proposals(core, sim, rng, held), 0.0)
            violations += int(sim.step(d.actions).violation.sum())
        backups += core.counts["gatekeeper.backup"]
        uncertified += core.counts["gatekeeper.uncertified"]
    out["closed_loop.adversarial"] = {
        "arena_steps": 5 * 32 * steps, "violations": violations, "backup": backups, "uncertified": uncertified
    }  # fmt: skip
    cfg = GridLifeConfig()
    for name, enabled in (("gatekeeper", True), ("no_gatekeeper", False)):
        sim = GridLifeBatch(cfg, 16)
        sim.reset(seed=7)
        core = ShieldCore(cfg, ShieldConfig(backup=BackupConfig(enabled=enabled)))
        rng = np.random.default_rng(7)
        samples = []
        for step in range(2000):
            prop = rng.uniform(-1, 1, size=(16, 2))
            t0 = time.perf_counter()
            d = core.step(step, sim.positions, sim.internal, prop, 0.0)
            samples.append(time.perf_counter() - t0)
            sim.step(d.actions)
        out[f"latency_us.closed_loop.{name}.16"] = percentiles(samples[100:])
    scripted: dict[str, float] = {}
    for name, shielded in (("shielded", True), ("unshielded", False)):
        tokens, passed, violations = 0.0, 0, 0
        for layout_seed in range(5):
            cfg = GridLifeConfig(layout_seed=layout_seed)
            sim = GridLifeBatch(cfg, 16)
            sim.reset(seed=0)
            core = ShieldCore(cfg, ShieldConfig())
            for step in range(2000):
                a = seek_station_policy(sim.positions, sim.internal, sim.tokens, cfg, sim.layout)
                if shielded:
                    d = core.step(step, sim.positions, sim.internal, a, 0.0)
                    passed += int((d.mode == MODE_PASS).sum())
                    a = d.actions
                res = sim.step(a)
                tokens += float(res.task_reward.sum())
                violations += int(res.violation.sum())
        scripted[f"tokens_per_1000_steps.{name}"] = round(tokens / (5 * 16 * 2), 2)
        scripted[f"violations.{name}"] = violations
        if shielded:
            scripted["pass_share"] = round(passed / (5 * 16 * 2000), 3)
    out["closed_loop.scripted"] = scripted
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1000, help="timed decisions per filter at batch 1")
    parser.add_argument("--decisions-64", type=int, default=200, help="timed decisions per filter at batch 64")
    parser.add_argument("--closed-loop-steps", type=int, default=5000)
    args = parser.parse_args()
    for name in ("decisions", "decisions_64", "closed_loop_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be >= 1")
    torch.set_num_threads(1)
    env_cfg = GridLifeConfig()
    barriers = GridLifeBarriers(env_cfg)
    pool = 256
    pos, h, prop = workload(barriers, pool * max(BATCHES), seed=1)

    off = BackupConfig(enabled=False)
    cores: dict[str, ShieldCore] = {
        "qp": ShieldCore(env_cfg, ShieldConfig(filter="qp", backup=off)),
        "qp_block": ShieldCore(env_cfg, ShieldConfig(filter="qp", qp=QPConfig(layout="block"), backup=off)),
        "search": ShieldCore(env_cfg, ShieldConfig(filter="search", backup=off)),
        "ensemble": ShieldCore(
            env_cfg, ShieldConfig(filter="ensemble", backup=off), viability_models=ensemble_models(barriers, 3)
        ),
        "amortised": ShieldCore(
            env_cfg, ShieldConfig(filter="amortised", amortised=AmortisedConfig(min_samples=20_000), backup=off)
        ),
    }
    amortised = cores["amortised"].filter
    t0 = time.perf_counter()
    tp, th, ta = workload(barriers, 20_000, seed=2)
    amortised.add_samples(tp, th, ta)
    amortised.train(1500)
    train_s = time.perf_counter() - t0
    project = halfspace_baseline(barriers)

    result: dict[str, object] = {"bench": "shield", "python": platform.python_version(), "torch_threads": 1}
    modes: dict[str, dict[str, float]] = {}
    for batch in BATCHES:
        n_sets = pool * max(BATCHES) // batch

        def sl(i: int, batch: int = batch, n_sets: int = n_sets) -> slice:
            j = i % n_sets
            return slice(j * batch, (j + 1) * batch)

        decisions = args.decisions if batch == 1 else args.decisions_64
        samples = timed(lambda i, sl=sl: project(pos[sl(i)], h[sl(i)], prop[sl(i)]), decisions)
        result[f"latency_us.halfspace_baseline.{batch}"] = percentiles(samples)
        for name, core in cores.items():
            before = dict(core.counts)
            samples = timed(lambda i, core=core, sl=sl: core.step(i, pos[sl(i)], h[sl(i)], prop[sl(i)], 0.0),
                            decisions)  # fmt: skip
            result[f"latency_us.{name}.{batch}"] = percentiles(samples)
            total = core.counts["decisions"] - before["decisions"]
            modes[f"{name}.{batch}"] = {
                m: round((core.counts[f"mode.{m}"] - before[f"mode.{m}"]) / total, 3)
                for m in MODE_NAMES
            }
    flat = {}
    for key, value in result.items():
        if isinstance(value, dict):
            for stat, v in value.items():
                flat[f"{key}.{stat}"] = v
        else:
            flat[key] = value
    flat["mode_share"] = modes
    flat["amortised.net_verified_share"] = round(
        amortised.stats["net_verified"] / max(1, amortised.stats["net_used"]), 3
    )
    flat["amortised.train_s"] = round(train_s, 1)
    flat["amortised_speedup_vs_search.64"] = round(
        flat["latency_us.search.64.p50"] / flat["latency_us.amortised.64.p50"], 2
    )
    flat["qp_p99_us_batch1_target_300_met"] = flat["latency_us.qp.1.p99"] <= 300
    flat["amortised_speedup_target_10_met"] = flat["amortised_speedup_vs_search.64"] >= 10
    for key, value in closed_loop(args.closed_loop_steps).items():
        if key.startswith("latency_us"):
            for stat, v in value.items():  # type: ignore[union-attr]
                flat[f"{key}.{stat}"] = v
        else:
            flat[key] = value
    print(json.dumps(flat))


if __name__ == "__main__":
    main()
