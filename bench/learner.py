"""Learner benchmark: SAC updates/s and replay ingest transitions/s, on CPU and on CUDA when present.

Also times the agent's actor inference on both backends (numpy and torch) at batch 1 and 64, which
decides ``nodes.sac.inference.DEFAULT_BACKEND``. Prints one JSON line. Baseline in the same run:
a plain numpy copy of the same transition batches into preallocated arrays (the memory-bound limit
of ingest). GridLife-sized problem: GridLife's observation (25), action 2, hidden 256x256, batch 256.

    .venv/bin/python bench/learner.py [--seconds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from nodes.env.gridlife import GridLifeConfig, obs_names
from nodes.sac.inference import DEFAULT_BACKEND, NumpyActor, TorchActor
from nodes.sac.replay import ReplayBuffer
from nodes.sac.sac import SAC, SACConfig

OBS_DIM, ACT_DIM, HIDDEN, BATCH = len(obs_names(GridLifeConfig())), 2, (256, 256), 256
INGEST_BATCH = 64  # one env message of 64 arenas
CAPACITY = 200_000


def random_transitions(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        (rng.random(n) < 0.01).astype(np.float32),
    )


def rate(fn: Callable[[], None], seconds: float, sync: Callable[[], None] = lambda: None) -> float:
    """Calls per second of ``fn`` over about ``seconds``, after a short warm-up."""
    for _ in range(5):
        fn()
    sync()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            fn()
        calls += 10
    sync()
    return calls / (time.perf_counter() - start)


def learner_rates(device: str, seconds: float) -> dict[str, float]:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    buffer = ReplayBuffer(CAPACITY, OBS_DIM, ACT_DIM, device)
    batch = random_transitions(INGEST_BATCH)
    ingest = rate(lambda: buffer.add_batch(*batch), seconds, sync) * INGEST_BATCH
    buffer.add_batch(*random_transitions(20_000, seed=1))
    sac = SAC(OBS_DIM, ACT_DIM, SACConfig(hidden=HIDDEN, batch_size=BATCH, device=device))
    updates = rate(lambda: sac.update(buffer.sample(BATCH, sac.generator)), seconds, sync)
    return {"updates_per_s": updates, "ingest_per_s": ingest}


def numpy_copy_rate(seconds: float) -> float:
    columns = [np.zeros((CAPACITY, *a.shape[1:]), np.float32) for a in random_transitions(1)]
    batch = random_transitions(INGEST_BATCH)
    cursor = [0]

    def copy() -> None:
        i = cursor[0]
        for column, rows in zip(columns, batch, strict=True):
            column[i : i + INGEST_BATCH] = rows
        cursor[0] = (i + INGEST_BATCH) % (CAPACITY - INGEST_BATCH)

    return rate(copy, seconds) * INGEST_BATCH


def inference_us(seconds: float) -> dict[str, dict[str, float]]:
    policy = SAC(OBS_DIM, ACT_DIM, SACConfig(hidden=HIDDEN, device="cpu")).policy()
    out: dict[str, dict[str, float]] = {}
    for name, actor in (("numpy", NumpyActor(policy)), ("torch", TorchActor(policy))):
        out[name] = {}
        for batch in (1, 64):
            obs = np.random.default_rng(0).normal(size=(batch, OBS_DIM)).astype(np.float32)
            rng = np.random.default_rng(0)
            out[name][str(batch)] = 1e6 / rate(lambda a=actor, o=obs, r=rng: a.act(o, False, r), seconds / 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = learner_rates("cpu", args.seconds)
    cuda = learner_rates("cuda", args.seconds) if torch.cuda.is_available() else None
    result = {
        "bench": "learner",
        "problem": {"obs_dim": OBS_DIM, "act_dim": ACT_DIM, "hidden": list(HIDDEN), "batch": BATCH},
        "ingest_batch": INGEST_BATCH,
        "updates_per_s": {"cpu": round(cpu["updates_per_s"], 1), "cuda": cuda and round(cuda["updates_per_s"], 1)},
        "ingest_per_s": {"cpu": round(cpu["ingest_per_s"]), "cuda": cuda and round(cuda["ingest_per_s"])},
        "baseline": {"numpy_copy_per_s": round(numpy_copy_rate(args.seconds))},
        "actor_infer_us": {k: {b: round(us, 1) for b, us in v.items()} for k, v in inference_us(args.seconds).items()},
        "agent_default_backend": DEFAULT_BACKEND,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
