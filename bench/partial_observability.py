"""The main job under partial observability: what a belief-safe policy can reach, against what the graph learns.
Prints one JSON line.

With ``partial_observability=true`` the internal variables are hidden; the estimator's interval belief
(nodes/estimator/interval.py) bounds them exactly. Measured in this run, on GridLife with hidden internals and
the env node's fixed evaluation seeds, unshielded:

- ``random``: a uniform random policy (issue 24's target is 3x its survival);
- ``keeper_truth``: the scripted station keeper reading the true internal state (not achievable here: a
  reference for what the hidden state costs);
- ``keeper_belief``: the same keeper reading the belief's worst corner (least energy, most heat, least
  integrity), the belief-safe scripted policy: the honest ceiling of a memoryless policy on the belief.

Then, for each seed (or for finished run directories, ``--runs``), the graph's own figures from summary.json:
training violations, the unshielded evaluation's survival (and its ratio to the graph's random baseline), the
shielded evaluation's survival and violations, tokens per 1,000 steps, and the estimator's coverage.

    .venv/bin/python bench/partial_observability.py --seeds 0 1 2 --steps 100000
    .venv/bin/python bench/partial_observability.py --runs runs/po-seed0 runs/po-seed1    # finished runs
    .venv/bin/python bench/partial_observability.py --baselines-only
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.main_job import ROOT, Act, evaluate, launch, run_arguments, scripted, uniform
from nodes.env.gridlife import GridLifeBatch, GridLifeConfig
from nodes.env.scripted import seek_station_policy
from nodes.estimator.interval import IntervalBelief


def belief_keeper(cfg: GridLifeConfig) -> Act:
    """The station keeper acting on the interval belief's worst corner, advanced from each observation."""
    belief = IntervalBelief(cfg)
    steps = iter(range(1 << 62))

    def act(batch: GridLifeBatch, obs: np.ndarray) -> np.ndarray:
        low, high = belief.advance(next(steps), obs, batch.episode_steps)
        worst = np.stack([low[:, 0], high[:, 1], low[:, 2]], axis=1)
        return seek_station_policy(batch.positions, worst, batch.tokens, batch.cfg, batch.layout)

    return act


def graph_figures(run_dir: Path) -> dict[str, Any]:
    """What the run's summary.json says of training, the evaluations and the estimator."""
    path = run_dir / "summary.json"
    if not path.exists():
        return {"run_dir": str(run_dir), "complete": False}
    s = json.loads(path.read_text())
    cap = s.get("episode_cap") or GridLifeConfig().episode_cap

    def section(name: str) -> dict[str, Any]:
        sec = s.get(name, {})
        return {"mean_survival_steps": sec.get("mean_survival_steps"), "survival_rate": sec.get("survival_rate"),
                "violations": sec.get("violations"), "tokens_per_1000_steps": sec.get("tokens_per_1000_steps")}

    learned, random_ = section("eval"), section("baseline_random")
    ratio = (learned["mean_survival_steps"] / random_["mean_survival_steps"]
             if learned["mean_survival_steps"] and random_["mean_survival_steps"] else None)
    shielded = section("eval_shielded")
    return {
        "run_dir": str(run_dir),
        "complete": bool(s.get("complete")),
        "wall_s": s.get("wall_s"),
        "train_violations": s.get("train", {}).get("violations_executed"),
        "estimator": {key: s.get("estimator", {}).get(key) for key in ("coverage", "target", "k", "calibrated")},
        "eval": learned,
        "baseline_random": random_,
        "baseline_scripted": section("baseline_scripted"),
        "eval_shielded": shielded,
        "eval_over_random": None if ratio is None else round(ratio, 2),
        "targets": {
            "train_violations_zero": s.get("train", {}).get("violations_executed") == 0,
            "shielded_violations_zero": shielded["violations"] == 0,
            "unshielded_3x_random": ratio is not None and ratio >= 3.0,
            "shielded_survives_90pct": shielded["mean_survival_steps"] is not None
            and shielded["mean_survival_steps"] >= 0.9 * cap,
            "estimator_coverage_at_target": (s.get("estimator", {}).get("coverage") or 0.0)
            >= s.get("estimator", {}).get("target", 1.0),
        },
    }


def main() -> None:
    parser = run_arguments(__doc__, steps=100_000, runs_root=ROOT / "runs" / "bench_partial_observability")
    parser.add_argument("--baselines-only", action="store_true", help="measure the in-process baselines only")
    opts = parser.parse_args()
    hidden = replace(GridLifeConfig(), partial_observability=True)

    t0 = time.monotonic()
    baselines = {
        "random": evaluate(uniform(opts.eval_seed), hidden, opts.episodes, opts.eval_seed),
        "keeper_truth": evaluate(scripted, hidden, opts.episodes, opts.eval_seed),
        "keeper_belief": evaluate(belief_keeper(hidden), hidden, opts.episodes, opts.eval_seed),
    }
    baseline_s = time.monotonic() - t0
    random_survival = baselines["random"]["survival_fraction_of_cap"]
    ratios = {name: round(b["survival_fraction_of_cap"] / random_survival, 2) for name, b in baselines.items()}

    runs: dict[str, Any] = {}
    if opts.runs:
        runs = {p.name: graph_figures(p) for p in opts.runs}
    elif not opts.baselines_only:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for seed in opts.seeds:
            run_dir = opts.runs_root / f"{stamp}-seed{seed}"
            wall = launch(seed, opts.steps, run_dir, ["partial_observability=true", *opts.arg], opts.set)
            runs[f"seed{seed}"] = {**graph_figures(run_dir), "launch_wall_s": round(wall, 1)}

    print(json.dumps({
        "bench": "partial_observability",
        "steps": None if opts.runs or opts.baselines_only else opts.steps,
        "eval_seed": opts.eval_seed,
        "episodes": opts.episodes,
        "baselines": baselines,
        "survival_over_random": ratios,
        "baseline_eval_s": round(baseline_s, 2),
        "runs": runs,
        "targets_met_all": bool(runs) and all(all(r.get("targets", {"x": False}).values()) for r in runs.values()),
    }), flush=True)


if __name__ == "__main__":
    main()
