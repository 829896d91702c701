"""The learner node end to end on its best device (CUDA when present), and SAC update rates at the
demo's network sizes on one CPU thread and on CUDA, in the same run. Prints one JSON line.

    .venv/bin/python bench/learner_node.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nodes.learner.node import LearnerNode
from nodes.sac.replay import ReplayBuffer
from nodes.sac.sac import SAC, SACConfig
from protocols import TransitionBatch

OBS_DIM, ARENAS, BATCHES = 25, 16, 400
SIZES = (((128, 128), 128), ((256, 256), 256), ((256, 256), 1024))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def learner_node_run(rng: np.random.Generator) -> dict[str, object]:
    """Feed the real node transition messages (no sockets) and let it learn, publish and checkpoint."""
    node = LearnerNode("learner", params={"device": "auto", "sac": {"learning_starts": 512, "publish_period": 20},
                                          "checkpoint_every_s": 0.0}, run_dir=tempfile.mkdtemp())
    node.transition("active")
    start = time.perf_counter()
    for step in range(BATCHES):
        obs = rng.normal(size=(ARENAS, OBS_DIM)).astype(np.float32)
        zeros = np.zeros(ARENAS, np.float32)
        node.on_transitions(TransitionBatch(
            step=step, obs=obs, actions=rng.uniform(-1, 1, (ARENAS, 2)).astype(np.float32),
            reward=rng.normal(size=ARENAS).astype(np.float32), reward_task=zeros, reward_homeo=zeros,
            next_obs=obs, terminated=np.zeros(ARENAS, bool), truncated=np.zeros(ARENAS, bool)))
    sync(node.algo.device.type)
    result = {"device": str(node.algo.device), "updates": node.algo.num_updates,
              "published_version": node.gauges.get("published_version"),
              "wall_s": round(time.perf_counter() - start, 2)}
    node.save_checkpoint()
    result["checkpoint_bytes"] = os.path.getsize(node.checkpoint_path)
    node.close()
    return result


def updates_per_s(device: str, hidden: tuple[int, int], batch: int, rng: np.random.Generator,
                  seconds: float) -> float:
    n = 20_000
    replay = ReplayBuffer(50_000, OBS_DIM, 2, device)
    replay.add_batch(rng.normal(size=(n, OBS_DIM)).astype(np.float32), rng.uniform(-1, 1, (n, 2)).astype(np.float32),
                     rng.normal(size=n).astype(np.float32), rng.normal(size=(n, OBS_DIM)).astype(np.float32),
                     np.zeros(n, np.float32))
    sac = SAC(OBS_DIM, 2, SACConfig(hidden=hidden, batch_size=batch, device=device))
    for _ in range(10):
        sac.update(replay.sample(batch, sac.generator))
    sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            sac.update(replay.sample(batch, sac.generator))
        count += 20
    sync(device)
    return round(count / (time.perf_counter() - start), 1)


def main() -> None:
    rng = np.random.default_rng(0)
    cuda = torch.cuda.is_available()
    out: dict[str, object] = {"bench": "learner_node", "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
                              "learner_node": learner_node_run(rng)}
    torch.set_num_threads(1)
    out["updates_per_s"] = {
        f"{h[0]}x{h[1]}_b{b}": {"cpu_1thread": updates_per_s("cpu", h, b, rng, 2.0),
                                "cuda": updates_per_s("cuda", h, b, rng, 3.0) if cuda else None}
        for h, b in SIZES
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
