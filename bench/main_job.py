"""The main job's learning target: does the policy `persist launch launch/single_agent.yaml` learns stay
alive *and* collect tokens? Prints one JSON line.

For each training seed it runs the launch file (or reads a finished run directory), then evaluates on
GridLife directly, unshielded and deterministic, on the same fixed evaluation seeds: the run's final actor
(from its learner checkpoint), the selected policy (``policy.safetensors``) when the run wrote one, and, as
the baselines measured in the same run, the scripted station keeper (nodes/env/scripted.py) and a uniform
random policy. The final actor is also evaluated behind the shield's core (QP filter) in this process, for a
run stopped before its own shielded evaluation; training violations come from the run's summary.json. `mean_drive` is
the homeostat's drive D(h) averaged over the steps alive: under discounting, plain drive reduction charges the
learner (1 - gamma) lambda_homeo D per step, so it says what living like that policy costs in reward.

    .venv/bin/python bench/main_job.py --seeds 0 1 2 --steps 300000
    .venv/bin/python bench/main_job.py --seeds 0 --steps 100000 --arg arenas=16 --set env.lambda_homeo=3.0
    .venv/bin/python bench/main_job.py --runs runs/20261207-141500      # evaluate finished runs only

Target (issue 18): survival >= 99% of the episode cap, tokens per 1,000 steps >= the keeper's, zero
executed violations in training and in the shielded evaluation, on every seed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig
from nodes.env.scripted import seek_station_policy
from nodes.sac.inference import NumpyActor
from nodes.sac.policy_file import Policy, load_policy
from nodes.sac.spec import ActorSpec
from nodes.shield.core import ShieldConfig, ShieldCore
from persist_rt import checkpoint

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch" / "single_agent.yaml"
Act = Callable[[GridLifeBatch, np.ndarray], np.ndarray]


def checkpoint_actor(path: Path) -> Policy:
    """The actor a learner checkpoint holds (the learner's final weights), as a policy."""
    arrays, meta = checkpoint.load(path)
    spec = ActorSpec.from_dict(meta["actor_spec"])
    tensors = {k.removeprefix("actor."): v for k, v in arrays.items() if k.startswith("actor.")}
    return Policy(spec, tensors, int(arrays["num_updates"][0]), str(path))


def actor_policy(policy: Policy) -> Act:
    actor = NumpyActor(policy)
    return lambda batch, obs: actor.act(obs, deterministic=True)


def scripted(batch: GridLifeBatch, obs: np.ndarray) -> np.ndarray:
    return seek_station_policy(batch.positions, batch.internal, batch.tokens, batch.cfg, batch.layout)


def uniform(seed: int) -> Act:
    rng = np.random.default_rng((seed, 1))
    return lambda batch, obs: rng.uniform(-1.0, 1.0, size=(batch.num_envs, 2)).astype(np.float32)


def shielded(act: Act, cfg: GridLifeConfig) -> Act:
    """`act` behind the shield node's core with its launch-file settings (QP filter), stepped in this process."""
    core = ShieldCore(cfg, ShieldConfig(filter="qp"))
    steps = iter(range(1 << 62))
    return lambda batch, obs: core.step(next(steps), batch.positions, batch.internal, act(batch, obs), 0.0).actions


def evaluate(act: Act, cfg: GridLifeConfig, episodes: int, seed: int) -> dict[str, Any]:
    """One episode per arena from `seed`: survival, tokens per 1,000 steps alive, violations."""
    batch = GridLifeBatch(cfg, num_envs=episodes)
    obs = batch.reset(seed=seed)
    running = np.ones(episodes, bool)
    lengths = np.zeros(episodes, np.int64)
    tokens = np.zeros(episodes)
    violations = 0
    died = np.zeros(episodes, bool)
    drive = 0.0  # summed over the steps alive: how far from its setpoints a policy lives
    while running.any():
        result = batch.step(act(batch, obs))
        obs = result.reset_obs
        drive += float(batch.homeostat.drive(result.next_internal)[running].sum())
        tokens += result.task_reward * running
        violations += int((result.violation & running).sum())
        ended = result.done & running
        lengths[ended] = result.episode_steps[ended]
        died |= ended & result.terminated
        running &= ~ended
    return {
        "survival_fraction_of_cap": round(float(lengths.mean() / cfg.episode_cap), 4),
        "survived_whole_episode": f"{int((~died).sum())}/{episodes}",
        "tokens_per_1000_steps": round(float(1000.0 * tokens.sum() / max(1, lengths.sum())), 3),
        "tokens_per_episode": round(float(tokens.mean()), 3),
        "violations": violations,
        "mean_drive": round(drive / max(1, lengths.sum()), 4),
    }


def launch(seed: int, steps: int, run_dir: Path, args: list[str], sets: list[str]) -> float:
    cmd = [str(ROOT / ".venv" / "bin" / "persist"), "launch", str(LAUNCH), "--run-dir", str(run_dir),
           "--arg", f"seed={seed}", "--arg", f"steps={steps}"]
    cmd += [x for a in args for x in ("--arg", a)] + [x for s in sets for x in ("--set", s)]
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(run_dir / "launch.out", "w") as out:
        subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False)
    return time.monotonic() - t0


def from_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if not path.exists():
        return {"complete": False}
    s = json.loads(path.read_text())
    return {
        "complete": bool(s.get("complete")),
        "train_wall_s": s.get("wall_s"),
        "train_violations": s.get("train", {}).get("violations_executed"),
        "train_intervention_rate_last_10pct": s.get("train", {}).get("intervention_rate_last_10pct"),
        "eval_shielded_violations": s.get("eval_shielded", {}).get("violations"),
        "chosen_version": s.get("select", {}).get("chosen_version"),
        "summary_eval_survival_rate": s.get("eval", {}).get("survival_rate"),
    }


def meets(learned: dict[str, Any], keeper: dict[str, Any], books: dict[str, Any]) -> bool:
    shielded_violations = books.get("eval_shielded_violations")
    if shielded_violations is None:
        shielded_violations = books.get("final_shielded", {}).get("violations")
    return (learned["survival_fraction_of_cap"] >= 0.99
            and learned["tokens_per_1000_steps"] >= keeper["tokens_per_1000_steps"]
            and books.get("train_violations") == 0 and shielded_violations == 0)


def run_arguments(doc: str | None, steps: int, runs_root: Path) -> argparse.ArgumentParser:
    """The arguments of a bench that launches the main job per seed (or reads finished runs) and evaluates."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="launch argument")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="node parameter")
    parser.add_argument("--runs", type=Path, nargs="+", help="evaluate these finished run directories instead")
    parser.add_argument("--runs-root", type=Path, default=runs_root)
    parser.add_argument("--episodes", type=int, default=64, help="evaluation episodes (one per arena)")
    parser.add_argument("--eval-seed", type=int, default=10_000, help="the env node's evaluation seed")
    return parser


def main() -> None:
    opts = run_arguments(__doc__, steps=300_000, runs_root=ROOT / "runs" / "bench_main_job").parse_args()
    cfg = GridLifeConfig()  # the launch file's env config: GridLife's defaults, fully observed

    t0 = time.monotonic()
    keeper = evaluate(scripted, cfg, opts.episodes, opts.eval_seed)
    random_ = evaluate(uniform(opts.eval_seed), cfg, opts.episodes, opts.eval_seed)
    baseline_s = time.monotonic() - t0

    runs: list[tuple[str, Path, float | None]] = []
    if opts.runs:
        runs = [(p.name, p, None) for p in opts.runs]
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for seed in opts.seeds:
            run_dir = opts.runs_root / f"{stamp}-seed{seed}"
            runs.append((f"seed{seed}", run_dir, launch(seed, opts.steps, run_dir, opts.arg, opts.set)))

    per_run: dict[str, Any] = {}
    for name, run_dir, wall in runs:
        entry: dict[str, Any] = {"run_dir": str(run_dir), **from_summary(run_dir)}
        if wall is not None:
            entry["launch_wall_s"] = round(wall, 1)
        ckpt = run_dir / "checkpoints" / "learner.safetensors"
        if ckpt.exists():
            final = actor_policy(checkpoint_actor(ckpt))
            entry["final"] = evaluate(final, cfg, opts.episodes, opts.eval_seed)
            entry["final_shielded"] = evaluate(shielded(final, cfg), cfg, opts.episodes, opts.eval_seed)
        selected = run_dir / "policy.safetensors"
        if selected.exists():
            entry["selected"] = evaluate(actor_policy(load_policy(selected)), cfg, opts.episodes, opts.eval_seed)
        judged = entry.get("selected", entry.get("final"))
        entry["target_met"] = judged is not None and meets(judged, keeper, entry)
        per_run[name] = entry

    print(json.dumps({
        "bench": "main_job",
        "steps": None if opts.runs else opts.steps,
        "args": opts.arg,
        "sets": opts.set,
        "eval_seed": opts.eval_seed,
        "episodes": opts.episodes,
        "scripted": keeper,
        "random": random_,
        "baseline_eval_s": round(baseline_s, 2),
        "runs": per_run,
        "target_met_all": all(r["target_met"] for r in per_run.values()),
    }))


if __name__ == "__main__":
    main()
