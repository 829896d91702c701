"""Chaos benchmark: the chaos test (tests/graph/test_chaos.py) made longer. During one training run of the
single-agent graph, kill -9 in turn the env, agent, learner, shield, estimator (with `--partial-observability`,
which the test uses), telemetry and the registry, `--rounds` times, at seeded random gaps, each once the previous victim
is back; then let the run finish training and its evaluations. Prints one JSON line: `kills`, `restarts`
(counted by the supervisor), `violations_executed` (training), `books_consistent` (executed + fallback steps =
env steps), with the run's env steps, the env's book resumes and the learner's replay resumes.

    .venv/bin/python bench/chaos.py [--rounds 3] [--seed 0] [--arenas 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.graph.chaos import PARTIAL, chaos, check, victims_of  # noqa: E402
from tests.graph.conftest import finish  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arenas", type=int, default=4)
    ap.add_argument("--extra-steps", type=int, default=2000, help="training steps after the last kill")
    ap.add_argument("--partial-observability", action="store_true", help="run (and kill) the estimator too")
    args = ap.parse_args()
    extra = ("--arg", f"arenas={args.arenas}") + (PARTIAL if args.partial_observability else ())
    t0 = time.monotonic()
    result = chaos(Path(tempfile.mkdtemp(prefix="chaos-")), seed=args.seed, rounds=args.rounds,
                   extra_steps=args.extra_steps, gap_s=(1.0, 5.0), victims=victims_of(args.partial_observability),
                   args=extra)
    try:
        code = result.run.wait_exit(600.0)
    finally:
        with contextlib.redirect_stdout(sys.stderr):  # the launch's output; stdout keeps the one JSON line
            finish(result.run)
    figures = check(result)
    summary = figures.pop("summary")
    print(json.dumps({
        "kills": figures["kills"], "restarts": figures["restarts"],
        "violations_executed": figures["violations_executed"], "books_consistent": figures["books_consistent"],
        "restarts_by_node": figures["restarts_by_node"], "complete": figures["complete"], "launch_exit": code,
        "env_steps": summary["env_steps"], "fallback_steps": summary["train"]["fallback_steps"],
        "env_books_resumed": figures["env_books_resumed"], "env_steps_unbooked": figures["env_steps_unbooked"],
        "learner_replay_resumed": figures["learner_replay_resumed"],
        "kill_order": [k.victim for k in result.kills], "rounds": args.rounds, "seed": args.seed,
        "wall_s": round(time.monotonic() - t0, 1), "run_dir": str(result.run.run_dir),
    }))


if __name__ == "__main__":
    main()
