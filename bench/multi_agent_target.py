"""The multi-agent experiment's target (issue 20), on 3 seeds: `persist launch launch/multi_agent.yaml` with
learning bodies, shields and the coupler on in training, then the protocol's evaluations.

Per seed: the unshielded-and-uncoupled evaluation's mean survival (`eval`) against the random baseline's on the
same arenas, measured in the same run (`baseline_random`), Jain's index of the allocator over training, and the
violations and collisions executed in training. Targets: survival at least 5x random on 3 of 3 seeds, Jain at
least 0.9, 0 violations and 0 collisions in training. With `--contrast`, one more run of the first seed with
`--arg coupler=false` gives its training collisions for contrast.

Keys: `seeds.<s>.{eval_survival_steps, random_survival_steps, ratio, jain_index, train_violations,
train_collisions, train_deaths, wall_s}`, `targets.{survival_5x_random, jain_0_9, zero_violations,
zero_collisions}` (seeds meeting each, of 3) and `met` (all on every seed); `contrast.train_collisions`.

    .venv/bin/python bench/multi_agent_target.py [--steps 24000] [--arenas 1] [--eval-episodes 4] [--contrast]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SEEDS = (0, 1, 2)


def launch(seed: int, args: argparse.Namespace, coupler: bool = True) -> dict[str, Any]:
    """One learned run; its summary.json ({} if it failed)."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        command = [sys.executable, "-m", "persist_rt.cli", "launch", str(ROOT / "launch" / "multi_agent.yaml"),
                   "--run-dir", str(run_dir), "--arg", f"seed={seed}", "--arg", f"steps={args.steps}",
                   "--arg", f"agents={args.agents}", "--arg", f"arenas={args.arenas}",
                   "--arg", f"eval_episodes={args.eval_episodes}", "--arg", f"episode_cap={args.episode_cap}",
                   "--arg", f"coupler={'true' if coupler else 'false'}"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
        path = run_dir / "summary.json"
        if done.returncode != 0 or not path.exists():
            print(done.stdout[-2000:], file=sys.stderr)
            return {}
        return json.loads(path.read_text())


def figures(summary: dict[str, Any]) -> dict[str, Any]:
    if not summary.get("complete"):
        return {"failed": True}
    ours = summary["eval"]["mean_survival_steps"]
    random = summary["baseline_random"]["mean_survival_steps"]
    return {"eval_survival_steps": ours, "random_survival_steps": random,
            "ratio": round(ours / random, 2) if random else None,
            "jain_index": round(summary["allocator"]["jain_index"], 4),
            "train_violations": summary["train"]["violations_executed"],
            "train_collisions": summary["train"]["collisions"], "train_deaths": summary["train"]["deaths"],
            "wall_s": summary["wall_s"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=24000, help="training body-steps per seed")
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--arenas", type=int, default=1)
    parser.add_argument("--eval-episodes", type=int, default=4, help="arenas per evaluation phase")
    parser.add_argument("--episode-cap", type=int, default=1000, help="steps of an evaluation episode")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("--contrast", action="store_true", help="also run seed 0 with the coupler off")
    args = parser.parse_args()
    seeds = {str(seed): figures(launch(seed, args)) for seed in SEEDS}
    ok = [s for s in seeds.values() if not s.get("failed")]
    targets = {"survival_5x_random": sum(1 for s in ok if s["ratio"] is not None and s["ratio"] >= 5.0),
               "jain_0_9": sum(1 for s in ok if s["jain_index"] >= 0.9),
               "zero_violations": sum(1 for s in ok if s["train_violations"] == 0),
               "zero_collisions": sum(1 for s in ok if s["train_collisions"] == 0)}  # fmt: skip
    out: dict[str, Any] = {"bench": "multi_agent_target", "python": platform.python_version(),
                           "steps": args.steps, "agents": args.agents, "arenas": args.arenas,
                           "eval_episodes": args.eval_episodes, "episode_cap": args.episode_cap, "seeds": seeds,
                           "targets": targets, "met": all(v == len(SEEDS) for v in targets.values())}  # fmt: skip
    if args.contrast:
        contrast = launch(SEEDS[0], args, coupler=False)
        out["contrast"] = {"train_collisions": contrast.get("train", {}).get("collisions")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
