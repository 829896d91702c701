"""Soak: the single-agent graph at 16 arenas with the learner training, for `--minutes` (30 by default).

Every `--every-s` (10 s) it samples each process of the run (the registry and every node, found by the run id
in their environment and named by the registry's node list) for resident memory, open file descriptors and
threads (psutil when installed, else /proc). Growth is measured from the end of the warm-up (`--warmup-frac`
of the run, 20 % by default: the learner's replay buffer fills and its allocator settles) to the last sample:
`rss_growth_pct.<node>` in percent, `fd_growth.<node>` and `thread_growth.<node>` as counts (the largest
minus the warm-up value, so a leak that closes again before the end still shows; `fd_growth_at_end.<node>` is
the last sample minus the warm-up value, which tells a leak from a file or connection open at one sample). A
respawned node (new pid) is reported in `respawns` and its growth is measured from its new pid's first sample.
`violations` is the env's `violations_executed`; `reliable_lost` is the sum of `lost` over every reliable
subscription of every node at the end. Prints one JSON line.

    .venv/bin/python bench/soak.py [--minutes 30] [--arenas 16] [--every-s 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from persist_rt import services  # noqa: E402

try:
    import psutil

    GONE: tuple[type[BaseException], ...] = (OSError, StopIteration, psutil.Error)
except ImportError:  # /proc does the same on Linux
    psutil = None
    GONE = (OSError, StopIteration, ValueError)

PAGE = os.sysconf("SC_PAGE_SIZE")


def run_pids(run_id: str) -> list[int]:
    """Pids whose environment names this run (the supervisor sets PERSIST_RUN_ID for the registry and nodes)."""
    marker = f"PERSIST_RUN_ID={run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def sample(pid: int) -> dict[str, int] | None:
    """RSS bytes, open fds, threads of one process; None if it is gone."""
    try:
        if psutil is not None:
            p = psutil.Process(pid)
            with p.oneshot():
                return {"rss": p.memory_info().rss, "fds": p.num_fds(), "threads": p.num_threads()}
        statm = Path(f"/proc/{pid}/statm").read_text().split()
        threads = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("Threads:"))
        return {"rss": int(statm[1]) * PAGE, "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": threads}
    except GONE:
        return None


def names(registry: str, pids: list[int]) -> dict[int, str]:
    """Node name of each pid (from the registry), the registry itself by its command line."""
    out: dict[int, str] = {}
    try:
        for node in services.call(registry, "nodes", timeout=2.0):
            out[int(node["pid"])] = node["name"]
    except (services.ServiceError, services.ServiceTimeout):
        pass
    for pid in pids:
        try:
            if b"persist_rt.registry" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out[pid] = "registry"
        except OSError:
            continue
    return out


def patient_call(endpoint: str, service: str, args: dict[str, Any] | None = None, tries: int = 6) -> Any:
    """A service call that waits out a node busy in a long callback (a learner's burst of updates)."""
    for i in range(tries):
        try:
            return services.call(endpoint, service, args, timeout=5.0)
        except services.ServiceTimeout:
            if i == tries - 1:
                raise
    return None


def reliable_lost(registry: str) -> tuple[int, int]:
    """(lost on reliable subscriptions, reliable subscriptions seen) over every node."""
    lost = edges = 0
    for node in patient_call(registry, "nodes"):
        stats = patient_call(node["endpoints"]["service"], "stats")
        for sub in stats.get("subscriptions", {}).values():
            if str(sub.get("qos", "")).startswith("reliable"):
                lost += int(sub["lost"])
                edges += 1
    return lost, edges


def growth(series: list[tuple[float, dict[str, int]]], warm_t: float) -> dict[str, float]:
    after = [s for t, s in series if t >= warm_t] or [series[-1][1]]
    base = after[0]
    return {"rss_pct": 100.0 * (after[-1]["rss"] - base["rss"]) / max(base["rss"], 1),
            "fds": max(s["fds"] for s in after) - base["fds"],
            "threads": max(s["threads"] for s in after) - base["threads"],
            "fds_end": after[-1]["fds"] - base["fds"],
            "rss_mb": after[-1]["rss"] / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--arenas", type=int, default=16)
    ap.add_argument("--every-s", type=float, default=10.0)
    ap.add_argument("--warmup-frac", type=float, default=0.2)
    ap.add_argument("--run-dir", default=None)
    args = ap.parse_args()
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="soak-")) / f"run-{uuid.uuid4().hex[:8]}"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = run_dir.parent / "launch.log"
    cmd = [sys.executable, "-m", "persist_rt.cli", "launch", str(REPO / "launch" / "single_agent.yaml"),
           "--run-dir", str(run_dir), "--arg", f"arenas={args.arenas}", "--arg", "steps=1000000000",
           "--arg", "eval_episodes=2"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    start = time.monotonic()
    end = start + 60.0 * args.minutes
    warm_t = start + args.warmup_frac * 60.0 * args.minutes
    series: dict[tuple[str, int], list[tuple[float, dict[str, int]]]] = {}
    registry = ""
    violations = steps = 0.0
    try:
        while time.monotonic() < end and proc.poll() is None:
            if not registry and (run_dir / "registry").exists():
                registry = (run_dir / "registry").read_text().strip()
            if registry:
                pids = run_pids(run_dir.name)
                for pid, name in names(registry, pids).items():
                    if pid in pids and (s := sample(pid)) is not None:
                        series.setdefault((name, pid), []).append((time.monotonic(), s))
                        with open(run_dir.parent / "samples.jsonl", "a") as f:  # kept if this script dies
                            f.write(json.dumps({"t": round(time.monotonic() - start, 1), "node": name, "pid": pid,
                                                **s}) + "\n")
                try:
                    env = services.call(registry, "node", {"name": "env"}, timeout=5.0)
                    gauges = services.call(env["endpoints"]["service"], "stats", timeout=5.0)["gauges"]
                    violations, steps = gauges.get("violations_executed", 0), gauges.get("progress.steps", 0)
                except (services.ServiceError, services.ServiceTimeout, KeyError):
                    pass
            time.sleep(args.every_s)
        try:
            lost, edges = reliable_lost(registry) if registry and proc.poll() is None else (-1, 0)
        except (services.ServiceError, services.ServiceTimeout, KeyError):
            lost, edges = -1, 0  # a node did not answer: unknown, not zero
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
    result: dict[str, Any] = {"minutes": args.minutes, "arenas": args.arenas, "samples_every_s": args.every_s,
                              "env_steps": steps, "launch_exit": proc.returncode}
    per_node: dict[str, list[tuple[int, list[tuple[float, dict[str, int]]]]]] = {}
    for (name, pid), s in series.items():
        per_node.setdefault(name, []).append((pid, s))
    respawns = {}
    for name, runs in sorted(per_node.items()):
        runs.sort(key=lambda r: r[1][0][0])
        if len(runs) > 1:
            respawns[name] = len(runs) - 1
        g = growth(runs[-1][1], warm_t)
        result[f"rss_growth_pct.{name}"] = round(g["rss_pct"], 2)
        result[f"rss_mb.{name}"] = round(g["rss_mb"], 1)
        result[f"fd_growth.{name}"] = g["fds"]
        result[f"thread_growth.{name}"] = g["threads"]
        result[f"fd_growth_at_end.{name}"] = g["fds_end"]
    result.update(violations=violations, reliable_lost=lost, reliable_edges=edges, respawns=respawns,
                  run_dir=str(run_dir))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
