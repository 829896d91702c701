"""Run one node in this process: what `persist launch` and `persist attach` execute.

    python -m persist_rt.run --kind talker --name talker --registry tcp://127.0.0.1:5555
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from persist_rt.kinds import KindError, load_kind
from persist_rt.node import busy_poll_seconds
from persist_rt.params import ParamError
from persist_rt.parent_death import die_with_supervisor


def main(argv: list[str] | None = None) -> int:
    die_with_supervisor()
    p = argparse.ArgumentParser(prog="persist-node")
    p.add_argument("--kind", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--registry", default=os.environ.get("PERSIST_REGISTRY"))
    p.add_argument("--params", default="{}", help="JSON object")
    p.add_argument("--namespace", default="")
    p.add_argument("--remaps", default="{}", help="JSON object topic -> topic")
    p.add_argument("--qos", default="{}", help="JSON object topic -> qos")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--base-dir", default=None, help="folder that relative file kinds are resolved against")
    p.add_argument("--transport", default="tcp", choices=["tcp", "ipc"])
    p.add_argument("--busy-poll-us", type=float, default=0.0,
                   help="poll without sleeping for up to this long before sleeping (lockstep loops)")
    args = p.parse_args(argv)
    try:
        busy_poll_seconds(args.busy_poll_us)
    except ValueError as exc:
        p.error(f"--busy-poll-us: {exc}")
    try:
        params = json.loads(args.params)
        remaps = json.loads(args.remaps)
        qos = json.loads(args.qos)
        cls = load_kind(args.kind, Path(args.base_dir) if args.base_dir else None)
        node = cls(args.name, registry=args.registry, params=params, namespace=args.namespace, remaps=remaps,
                   qos_overrides=qos, run_dir=args.run_dir, transport=args.transport,
                   busy_poll_us=args.busy_poll_us)
    except (KindError, ParamError, ValueError) as exc:
        print(f"[{args.name}] ERROR   cannot start: {exc}", file=sys.stderr, flush=True)
        return 2
    profile_dir = os.environ.get("PERSIST_PROFILE_DIR")
    if profile_dir:  # opt-in: one cProfile dump per node, `<dir>/<name>.prof`, for finding where a graph spends
        import cProfile

        profiler = cProfile.Profile(time.thread_time)  # CPU time: waiting and preemption by other processes excluded
        try:
            profiler.runcall(node.spin)
        finally:
            Path(profile_dir).mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(Path(profile_dir) / f"{args.name.replace('/', '_')}.prof")
    else:
        node.spin()
    return 1 if getattr(node, "failed", False) else 0


if __name__ == "__main__":
    sys.exit(main())
