"""The learner node: SAC (or CVaR-SAC, by ``algorithm``) on the replay stream, publishing actor weights to the agent.

Transitions arrive on ``env/transitions`` with reliable QoS. After each batch the learner runs the
updates it owes (``utd_ratio`` per transition); while it works it grants no credit, so a fast env
is slowed to the learner's pace instead of the ratio drifting. Small batches are staged and written to
the replay buffer ``stage_rows`` transitions at a time, and always before an update. Every
``publish_period`` updates the actor goes out on ``policy/weights``. Checkpoints (safetensors + JSON,
atomic) are written every ``checkpoint_every_s`` and at shutdown, the replay buffer beside them; a restarted
learner resumes from the newest good one (a corrupt file is refused by its digest, and the previous one used).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from persist_rt import Node, Param
from persist_rt.checkpoint import CheckpointError, load_newest
from protocols import PolicyWeights, TransitionBatch


class LearnerNode(Node):
    kind = "learner"

    algorithm = Param("sac", "sac, or cvar_sac: a quantile critic and an actor maximising CVaR_alpha of the return",
                      choices=("sac", "cvar_sac"), read_only=True)
    cvar_alpha = Param(1.0, "cvar_sac: fraction of the worst returns the actor optimises (1.0: the mean)", gt=0, le=1,
                       read_only=True)
    n_quantiles = Param(32, "cvar_sac: return quantiles per critic", ge=1, read_only=True)
    use_estimate = Param(False, "learn from estimator/transitions (observations with the belief appended)",
                         read_only=True)
    device = Param("auto", "auto (CUDA when present), cpu or cuda", read_only=True)
    seed = Param(0, "seed of network initialisation and sampling", ge=0)
    utd_ratio = Param(0.25, "gradient updates per transition", gt=0)
    batch_size = Param(128, "minibatch size", ge=1)
    hidden = Param([128, 128], "hidden layer sizes of actor and critics", read_only=True)
    gamma = Param(0.99, "discount", ge=0, lt=1)
    actor_lr = Param(3e-4, "actor learning rate", gt=0)
    critic_lr = Param(1e-3, "critic learning rate", gt=0)
    learning_starts = Param(2000, "transitions before the first update", ge=0)
    replay_capacity = Param(200_000, "replay buffer size in transitions", ge=1, read_only=True)
    publish_period = Param(50, "publish actor weights every K updates", ge=1)
    policy_average = Param(0.0, "> 0: publish a running (Polyak) average of the actor with this rate", ge=0, le=1)
    checkpoint_every_s = Param(60.0, "checkpoint cadence in seconds (0: only at shutdown)", ge=0)
    threads = Param(1, "torch CPU threads", ge=1)
    stage_rows = Param(64, "transitions gathered before they go into the replay buffer in one write "
                       "(always all of them before an update or a checkpoint)", ge=1)

    def on_configure(self) -> None:
        import torch

        torch.set_num_threads(self.threads)
        self.torch = torch
        # torch's first optimiser costs about a second of lazy imports: pay it here, before the node is announced,
        # rather than on the first transitions, where it takes the CPU from the env loop that feeds them
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)
        self.sac: Any = None
        self.replay: Any = None
        self.transitions_seen = 0
        self.last_checkpoint = time.monotonic()
        self.update_time = 0.0
        # a write to the replay buffer costs about the same for 1 row as for 64: batches of a few arenas are
        # gathered here first, so the learner's share of the CPU it shares with the env loop stays small
        self.staged: list[TransitionBatch] = []
        self.staged_rows = 0
        self.weights_pub = self.publisher("policy/weights", PolicyWeights)
        # under partial observability the estimator's copy of the replay stream: the observations with the belief
        # the agent acted on appended (docs/estimator.md)
        topic = "estimator/transitions" if self.use_estimate else "env/transitions"
        self.subscribe(topic, TransitionBatch, self.on_transitions, qos="reliable(8)")

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / "checkpoints" / "learner.safetensors" if self.run_dir else None

    def build(self, obs_dim: int, act_dim: int) -> None:
        from nodes.sac.replay import ReplayBuffer
        from nodes.sac.sac import SAC, SACConfig

        common: dict[str, Any] = dict(
            gamma=self.gamma, actor_lr=self.actor_lr, critic_lr=self.critic_lr, batch_size=self.batch_size,
            hidden=tuple(self.hidden), utd_ratio=self.utd_ratio, publish_period=self.publish_period,
            learning_starts=self.learning_starts, replay_capacity=self.replay_capacity, device=self.device,
            seed=self.seed, policy_average=self.policy_average)
        if self.algorithm == "cvar_sac":
            from nodes.sac.cvar_sac import CVaRSAC, CVaRSACConfig

            cvar_config = CVaRSACConfig(**common, cvar_alpha=self.cvar_alpha, n_quantiles=self.n_quantiles)
            self.sac = CVaRSAC(obs_dim, act_dim, cvar_config)
        else:
            self.sac = SAC(obs_dim, act_dim, SACConfig(**common))
        self.replay = ReplayBuffer(self.replay_capacity, obs_dim, act_dim, self.sac.device)
        self.log.info("learner_ready", device=str(self.sac.device), obs_dim=obs_dim, act_dim=act_dim)
        path = self.checkpoint_path
        if path is not None:
            self.resume(path)

    def resume(self, path: Path) -> None:
        """The newest good checkpoint and replay file, saying which one and why an older one when it is."""
        for what, target, reader in (("checkpoint", path, self.sac.resume),
                                     ("replay", path.with_name("replay.safetensors"), self.replay.load)):
            try:
                found = load_newest(target, reader)
            except CheckpointError as exc:  # every copy refused: start afresh rather than not at all
                self.log.error(f"{what}_unusable", path=str(target), reason=str(exc))
                self.count(f"{what}_unusable")
                continue
            if found is None:
                continue
            result, used, refusals = found
            if refusals:
                self.log.warning(f"{what}_fallback", path=str(used), refused=refusals)
                self.count(f"{what}_fallbacks")
            if what == "checkpoint":
                self.transitions_seen = int(result.get("transitions_seen", 0))
                self.log.info("resumed", path=str(used), updates=self.sac.num_updates,
                              transitions_seen=self.transitions_seen)
                self.count("resumes")
                self.publish_weights()
            else:
                self.log.info("replay_resumed", path=str(used), rows=len(self.replay))

    # --- learning ---------------------------------------------------------------------------

    def on_transitions(self, msg: TransitionBatch) -> None:
        if self.sac is None:
            self.build(msg.obs.shape[1], msg.actions.shape[1])
        dims = (msg.obs.shape[1], msg.actions.shape[1])
        if dims != (self.replay.obs_dim, self.replay.act_dim):  # refused alone, before it joins a staged write
            raise ValueError(f"transitions of step {msg.step}: obs_dim, act_dim {dims}, the replay buffer holds "
                             f"{(self.replay.obs_dim, self.replay.act_dim)}")
        self.staged.append(msg)
        self.staged_rows += msg.obs.shape[0]
        self.transitions_seen += msg.obs.shape[0]
        stored = len(self.replay) + self.staged_rows
        owed = self.sac.updates_owed(self.transitions_seen) if stored >= self.batch_size else 0
        if owed or self.staged_rows >= self.stage_rows:
            self.store_staged()
        t0 = time.perf_counter()
        stats: Mapping[str, float] = {}
        for _ in range(owed):
            stats = self.sac.update(self.replay.sample(self.batch_size, self.sac.generator))
            if self.sac.publish_due():
                self.publish_weights()
            self.keep_alive()  # a message of many steps owes many updates: seconds on a loaded machine
        if owed:
            for key, value in stats.items():  # the first read waits for the device, so it comes before the clock
                self.gauge(f"sac.{key}", value)
            self.update_time += time.perf_counter() - t0
        if self.checkpoint_every_s and time.monotonic() - self.last_checkpoint > self.checkpoint_every_s:
            self.save_checkpoint()

    def store_staged(self) -> None:
        """Write the staged transitions into the replay buffer, in one write."""
        staged, self.staged, self.staged_rows = self.staged, [], 0
        if not staged:
            return
        self.replay.add_batch(*(np.concatenate([getattr(m, name) for m in staged])
                                for name in ("obs", "actions", "reward", "next_obs")),
                              np.concatenate([m.terminated for m in staged]).astype(np.float32))

    def refresh(self) -> None:
        if self.sac is None:
            return
        self.gauge("updates", self.sac.num_updates)
        self.gauge("replay_size", min(self.replay.capacity, len(self.replay) + self.staged_rows))
        self.gauge("transitions_seen", self.transitions_seen)
        self.gauge("updates_per_s", self.sac.num_updates / self.update_time if self.update_time else 0.0)

    def publish_weights(self) -> None:
        policy = self.sac.policy()
        self.weights_pub.publish(PolicyWeights(**policy.wire_fields()))
        self.gauge("published_version", policy.version)

    def save_checkpoint(self) -> None:
        path = self.checkpoint_path
        self.last_checkpoint = time.monotonic()
        if path is None or self.sac is None:
            return
        self.store_staged()
        self.sac.checkpoint(path, {"transitions_seen": self.transitions_seen})
        self.replay.save(path.with_name("replay.safetensors"))
        self.count("checkpoints")

    def on_shutdown(self) -> None:
        self.save_checkpoint()
