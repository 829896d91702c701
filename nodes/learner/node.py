"""The learner node: SAC (or CVaR-SAC, by ``algorithm``) on the replay stream, publishing actor weights to the agent.

Transitions arrive on ``env/transitions`` with reliable QoS. After each batch the learner runs the
updates it owes (``utd_ratio`` per transition); while it works it grants no credit, so a fast env
is slowed to the learner's pace instead of the ratio drifting. Small batches are staged and written to
the replay buffer ``stage_rows`` transitions at a time, and always before an update. Every
``publish_period`` updates the actor goes out on ``policy/weights``. Checkpoints (safetensors + JSON,
atomic) are written every ``checkpoint_every_s`` and at shutdown, the replay buffer beside them; a restarted
learner resumes from the newest good one (a corrupt file is refused by its digest, and the previous one used).

With ``intrinsic`` set, an intrinsic reward (nodes/intrinsic) is fitted on every sampled batch and recomputed
on it, so the reward always comes from the current model (none is stored in the replay buffer, where it would go
stale): SAC learns from r_total = r + lambda_intr * r_intr. The intrinsic model's tensors travel in the learner's
checkpoint (``attached.intrinsic.*``), and a checkpoint of another method is refused by the field ``intrinsic``.
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
from protocols.topics import ENV_TRANSITIONS, ESTIMATOR_TRANSITIONS, POLICY_WEIGHTS

ALGORITHMS = ("sac", "cvar_sac", "mpc")
# nodes.intrinsic.METHODS, written out: launch files and the wizard check choices from literals, without imports
INTRINSIC = ("none", "surprise_minimise", "surprise_seek", "rnd", "empowerment")
# what SAC reads afresh on every update: the only config fields a running learner can change
LIVE_FIELDS = ("batch_size", "gamma", "utd_ratio", "publish_period", "learning_starts")
INTRINSIC_PREFIX = "intrinsic."  # the intrinsic model's tensors among the checkpoint's attached ones


class LearnerNode(Node):
    kind = "learner"

    algorithm = Param("sac", "sac, or cvar_sac: a quantile critic and an actor maximising CVaR_alpha of the return; "
                      "mpc: the agent plans and nothing is learned here", choices=ALGORITHMS, read_only=True)
    intrinsic = Param("none", "intrinsic reward fitted and recomputed on every sampled batch (docs/intrinsic.md)",
                      choices=INTRINSIC, read_only=True)
    lambda_intr = Param(0.1, "weight of the intrinsic reward: r_total = r + lambda_intr * r_intr", ge=0)
    use_estimate = Param(False, "learn from estimator/transitions (observations with the belief appended)",
                         read_only=True)
    # the algorithm's hyperparameters, whole, with their defaults in nodes/sac/config.py: e.g. {batch_size: 64}
    sac = Param({}, "SAC hyperparameters: a mapping of SACConfig fields (nodes/sac/config.py)",
                config="nodes.sac.config:SACConfig")
    cvar_sac = Param({}, "cvar_sac: CVaRSACConfig fields over those of `sac` (n_quantiles, cvar_alpha, ...)",
                     config="nodes.sac.config:CVaRSACConfig")
    device = Param("auto", "auto (CUDA when present), cpu or cuda", read_only=True)
    seed = Param(0, "seed of network initialisation and sampling", ge=0)
    checkpoint_every_s = Param(60.0, "checkpoint cadence in seconds (0: only at shutdown)", ge=0)
    threads = Param(1, "torch CPU threads", ge=1)
    stage_rows = Param(64, "transitions gathered before they go into the replay buffer in one write "
                       "(always all of them before an update or a checkpoint)", ge=1)

    def on_configure(self) -> None:
        if self.algorithm != "mpc":  # a planning agent leaves the learner nothing to learn: no torch then
            import torch

            torch.set_num_threads(self.threads)
            # torch's first optimiser costs about a second of lazy imports: pay it here, before the node is
            # announced, rather than on the first transitions, where it takes the CPU from the env loop
            torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)
        self.algo: Any = None  # SAC or CVaRSAC, built on the first transitions
        self.replay: Any = None
        self.transitions_seen = 0
        self.last_checkpoint = time.monotonic()
        self.update_time = 0.0
        self.intr: Any = None  # the intrinsic reward, or None
        self.intr_sum, self.intr_count = 0.0, 0  # the intrinsic reward's mean over every batch (summary figure)
        # a write to the replay buffer costs about the same for 1 row as for 64: batches of a few arenas are
        # gathered here first, so the learner's share of the CPU it shares with the env loop stays small
        self.staged: list[TransitionBatch] = []
        self.staged_rows = 0
        self.weights_pub = self.publisher(POLICY_WEIGHTS, PolicyWeights)
        # under partial observability the estimator's copy of the replay stream: the observations with the belief
        # the agent acted on appended (docs/estimator.md)
        topic = ESTIMATOR_TRANSITIONS if self.use_estimate else ENV_TRANSITIONS
        self.subscribe(topic, TransitionBatch, self.on_transitions, qos="reliable(8)")
        self.service("learner.summary", lambda args: self.summary(), read_only=True)

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / "checkpoints" / "learner.safetensors" if self.run_dir else None

    def config(self) -> Any:
        """The algorithm's effective config: the launch file's fields over the defaults, the node's device and seed."""
        from nodes.sac.config import CVaRSACConfig, SACConfig

        if self.algorithm == "cvar_sac":
            return CVaRSACConfig(**{**self.sac, **self.cvar_sac}, device=self.device, seed=self.seed)
        return SACConfig(**self.sac, device=self.device, seed=self.seed)

    def on_param_change(self, name: str, old: Any, new: Any) -> None:
        """A live change of the config reaches SAC only in the fields it reads on every update."""
        if name not in ("sac", "cvar_sac") or getattr(self, "algo", None) is None:
            return
        config = self.config()
        for field in set(old) | set(new):
            if old.get(field) != new.get(field) and field not in LIVE_FIELDS:
                raise ValueError(f"{name}.{field}: fixed once the networks are built (live: {', '.join(LIVE_FIELDS)})")
        self.algo.config = config

    def build(self, obs_dim: int, act_dim: int) -> None:
        from nodes.sac.replay import ReplayBuffer
        from nodes.sac.sac import SAC

        config = self.config()
        if self.algorithm == "cvar_sac":
            from nodes.sac.cvar_sac import CVaRSAC

            self.algo = CVaRSAC(obs_dim, act_dim, config)
        else:
            self.algo = SAC(obs_dim, act_dim, config)
        self.replay = ReplayBuffer(config.replay_capacity, obs_dim, act_dim, self.algo.device)
        self.intr = self.make_intrinsic()
        self.log.info("learner_ready", device=str(self.algo.device), obs_dim=obs_dim, act_dim=act_dim)
        path = self.checkpoint_path
        if path is not None:
            self.resume(path)

    def make_intrinsic(self) -> Any:
        from nodes.intrinsic import make

        intr = make(self.intrinsic, self.replay.obs_dim, self.replay.act_dim, seed=self.seed)
        return None if intr is None else intr.to(self.algo.device)

    def read_checkpoint(self, path: Path) -> dict[str, Any]:
        """SAC and the intrinsic model from one file; the intrinsic part is loaded into a fresh model and kept
        only once SAC has accepted the file too, so a refused file changes neither."""
        loaded: list[Any] = []

        def attached(tensors: dict[str, np.ndarray], extra: dict[str, Any], source: str) -> None:
            saved = extra.get("intrinsic", "none")
            if saved != self.intrinsic:
                raise CheckpointError(f"{source}: field 'intrinsic' is {saved!r}, this learner's is {self.intrinsic!r}")
            intr = self.make_intrinsic()
            if intr is not None:
                intr.load_state_arrays({k[len(INTRINSIC_PREFIX):]: v for k, v in tensors.items()
                                        if k.startswith(INTRINSIC_PREFIX)}, f"{source}: field 'intrinsic'")
            loaded.append(intr)

        extra = self.algo.resume(path, attached)
        self.intr = loaded[0]
        return extra

    def resume(self, path: Path) -> None:
        """The newest good checkpoint and replay file, saying which one and why an older one when it is."""
        for what, target, reader in (("checkpoint", path, self.read_checkpoint),
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
                self.log.info("resumed", path=str(used), updates=self.algo.num_updates,
                              transitions_seen=self.transitions_seen)
                self.count("resumes")
                self.publish_weights()
            else:
                self.log.info("replay_resumed", path=str(used), rows=len(self.replay))

    # --- learning ---------------------------------------------------------------------------

    def on_transitions(self, msg: TransitionBatch) -> None:
        if self.algorithm == "mpc":  # the agent plans: the stream is acknowledged (so the env is not held) and dropped
            self.transitions_seen += msg.obs.shape[0]
            self.gauge("transitions_seen", self.transitions_seen)
            return
        if self.algo is None:
            self.build(msg.obs.shape[1], msg.actions.shape[1])
        dims = (msg.obs.shape[1], msg.actions.shape[1])
        if dims != (self.replay.obs_dim, self.replay.act_dim):  # refused alone, before it joins a staged write
            raise ValueError(f"transitions of step {msg.step}: obs_dim, act_dim {dims}, the replay buffer holds "
                             f"{(self.replay.obs_dim, self.replay.act_dim)}")
        self.staged.append(msg)
        self.staged_rows += msg.obs.shape[0]
        self.transitions_seen += msg.obs.shape[0]
        stored = len(self.replay) + self.staged_rows
        owed = self.algo.updates_owed(self.transitions_seen) if stored >= self.algo.config.batch_size else 0
        if owed or self.staged_rows >= self.stage_rows:
            self.store_staged()
        t0 = time.perf_counter()
        stats: Mapping[str, float] = {}
        for i in range(owed):
            batch = self.replay.sample(self.algo.config.batch_size, self.algo.generator)
            stats = self.algo.update(batch if self.intr is None else self.with_intrinsic(batch, report=i == owed - 1))
            if self.algo.publish_due():
                self.publish_weights()
            self.keep_alive()  # a message of many steps owes many updates: seconds on a loaded machine
        if owed:
            for key, value in stats.items():  # the first read waits for the device, so it comes before the clock
                self.gauge(f"sac.{key}", value)
            self.update_time += time.perf_counter() - t0
        if self.checkpoint_every_s and time.monotonic() - self.last_checkpoint > self.checkpoint_every_s:
            self.save_checkpoint()

    def with_intrinsic(self, batch: Any, report: bool = True) -> Any:
        """Fit the intrinsic model on the batch, then the batch with r_total = r + lambda_intr * r_intr (the
        reward of the model as it is now). With ``report`` the term's figures go to telemetry: each read waits
        for the device, so a run of updates reports its last one only."""
        from nodes.intrinsic.base import p95

        losses, r_intr = self.intr.fit_reward(batch.obs, batch.action, batch.next_obs)
        term = self.lambda_intr * r_intr
        self.intr_sum, self.intr_count = self.intr_sum + r_intr.mean(), self.intr_count + 1  # stays on the device
        if report:
            self.gauge("intrinsic.mean", float(r_intr.mean()))
            self.gauge("intrinsic.p95", p95(r_intr))
            # share of r_total's magnitude that the intrinsic term makes up, in [0, 1]
            magnitude = float(term.abs().sum() + batch.reward.abs().sum())
            self.gauge("intrinsic.share", float(term.abs().sum()) / magnitude if magnitude else 0.0)
            self.gauge("intrinsic.model_loss", sum(losses.values()))
        return batch._replace(reward=batch.reward + term)

    def store_staged(self) -> None:
        """Write the staged transitions into the replay buffer, in one write."""
        staged, self.staged, self.staged_rows = self.staged, [], 0
        if not staged:
            return
        self.replay.add_batch(*(np.concatenate([getattr(m, name) for m in staged])
                                for name in ("obs", "actions", "reward", "next_obs")),
                              np.concatenate([m.terminated for m in staged]).astype(np.float32))

    def summary(self) -> dict[str, Any]:
        """What the run's summary.json records of the learner: its configuration and the intrinsic term's mean
        over every batch it trained on (0 without one; None before the first update)."""
        none = 0.0 if self.intrinsic == "none" else None
        mean = float(self.intr_sum) / self.intr_count if self.intr_count else none
        return {"config": {"agent": self.algorithm, "intrinsic": self.intrinsic, "lambda_intr": self.lambda_intr},
                "train": {"intrinsic_mean": mean}}

    def refresh(self) -> None:
        if self.algo is None:
            return
        self.gauge("updates", self.algo.num_updates)
        self.gauge("replay_size", min(self.replay.capacity, len(self.replay) + self.staged_rows))
        self.gauge("transitions_seen", self.transitions_seen)
        self.gauge("updates_per_s", self.algo.num_updates / self.update_time if self.update_time else 0.0)
        if self.intr_count:
            self.gauge("intrinsic.train_mean", float(self.intr_sum) / self.intr_count)

    def publish_weights(self) -> None:
        policy = self.algo.policy()
        self.weights_pub.publish(PolicyWeights(**policy.wire_fields()))
        self.gauge("published_version", policy.version)

    def save_checkpoint(self) -> None:
        path = self.checkpoint_path
        self.last_checkpoint = time.monotonic()
        if path is None or self.algo is None:
            return
        self.store_staged()
        attached = {} if self.intr is None else \
            {INTRINSIC_PREFIX + k: v for k, v in self.intr.state_arrays().items()}
        self.algo.checkpoint(path, {"transitions_seen": self.transitions_seen, "intrinsic": self.intrinsic,
                                   "lambda_intr": self.lambda_intr}, attached)
        self.replay.save(path.with_name("replay.safetensors"))
        self.count("checkpoints")

    def on_shutdown(self) -> None:
        self.save_checkpoint()
