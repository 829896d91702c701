"""The estimator node: a belief over the hidden internal variables, published every step.

With ``belief: interval`` (the default) the belief is the exact box of GridLife's known dynamics
(``IntervalBelief``, nodes/estimator/interval.py): for each ``env/obs`` of step t it advances each
arena's box [low, high] and publishes ``estimator/state`` for step t with mean = its centre and
std = its half-width, so the box mean +- 1 * std holds the truth by construction. With
``belief: learned`` a GRU advances one hidden state per arena (zeroed where the episode starts,
``episode_step == 0``) and publishes its mean and std; it learns online from ``env/transitions``,
which carry the truth the env knows: every ``train_every`` env steps of them one truncated-BPTT pass
over stored episodes (``OnlineTrainer``).

Either way it republishes the replay stream on ``estimator/transitions`` with the belief appended to
``obs`` and ``next_obs`` (``with_belief``): the input the agent acted on, so that a learner reading
that stream trains on it.

Until the model has been trained once, the published belief is the prior: the mean and std of the
truth seen so far (or the middle of [0, 1] with std 0.5 before any), never an untrained network's
confident guess. Every estimate of the trained model is scored against the truth when it arrives
(``Calibration``): the published k (the confidence box is mean +- k * std), the measured online coverage
of that box and whether it reached ``coverage_target`` go out with each estimate; the shield trusts
only a calibrated belief. Service ``estimator.calibration`` answers the figures (the run summary's
``estimator`` section). Checkpoints (safetensors + JSON, atomic)
are written every ``checkpoint_every_s`` and at shutdown; a restarted estimator resumes from them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from nodes.estimator.inputs import with_belief
from nodes.estimator.interval import as_estimate
from persist_rt import Node, Param
from protocols import Observation, StateEstimate, TransitionBatch
from protocols.topics import ENV_OBS, ENV_TRANSITIONS, ESTIMATOR_STATE, ESTIMATOR_TRANSITIONS

PRIOR_MEAN, PRIOR_STD = 0.5, 0.5  # internal variables live in [0, 1]
MIN_STD = 1e-3  # the prior never claims certainty
# recent estimates kept to score them against the truth when it arrives: the replay stream brings it in
# messages of several steps, sent several messages at a time (the env's replay_steps, 8, times 8)
KEEP_ESTIMATES = 512


class EstimatorNode(Node):
    kind = "estimator"

    belief = Param("interval", "interval (exact, from the known dynamics of GridLife with `config`) or learned "
                   "(a GRU trained online)", choices=("interval", "learned"), read_only=True)
    config = Param({}, "GridLife constants of the interval belief: must match the env's", read_only=True)
    target_dim = Param(3, "internal variables estimated (energy, temperature, integrity)", ge=1, read_only=True)
    hidden = Param(64, "GRU state size", ge=1, read_only=True)
    lr = Param(3e-3, "learning rate", gt=0)
    batch_size = Param(32, "episodes per training pass", ge=1)
    chunk_len = Param(50, "truncated-BPTT window in steps", ge=1)
    max_episode_len = Param(1000, "training sequences are cut at this many steps", ge=1, read_only=True)
    capacity_steps = Param(200_000, "steps of finished episodes kept for training", ge=1, read_only=True)
    train_every = Param(20, "one training pass every this many env steps of transitions", ge=1)
    seed = Param(0, "seed of initialisation and minibatch order", ge=0, read_only=True)
    device = Param("cpu", "cpu, cuda or auto (online steps are tiny: cpu is the default)",
                   choices=("cpu", "cuda", "auto"), read_only=True)
    checkpoint_every_s = Param(30.0, "checkpoint cadence in seconds (0: only at shutdown)", ge=0)
    threads = Param(1, "torch CPU threads", ge=1)
    coverage_target = Param(0.999, "online coverage the k * std box must reach to count as calibrated",
                            gt=0, lt=1, read_only=True)
    calibration_window = Param(20_000, "scored arena-steps the coverage is measured over", ge=1, read_only=True)
    calibration_min_samples = Param(2_000, "scored arena-steps before the learned belief can be calibrated (the "
                                    "exact interval box is trusted from its first step until refuted)", ge=1,
                                    read_only=True)

    def on_configure(self) -> None:
        from nodes.estimator.calibration import Calibration, CalibrationConfig

        self.interval: Any = None
        if self.belief == "interval":
            from nodes.env.gridlife import GridLifeConfig
            from nodes.estimator.interval import IntervalBelief

            self.interval = IntervalBelief(GridLifeConfig.from_params(self.config))
            # the box is exact: trusted from the first step, k starts and stays at 1, until the truth is seen
            # outside it (a model that is wrong); calibration_min_samples is the learned belief's warm-up
            extra: dict[str, float] = {"k_start": 1.0, "k_min": 1.0, "margin": 1.0, "min_samples": 0}
        else:
            import torch

            torch.set_num_threads(self.threads)
            extra = {}
        self.calibration = Calibration(CalibrationConfig(**{
            "target": self.coverage_target, "window": self.calibration_window,
            "min_samples": self.calibration_min_samples, **extra}))
        self.estimator: Any = None
        self.trainer: Any = None
        self.hidden_state: np.ndarray | None = None  # (1, N, hidden) GRU state per arena
        # step -> published mean, and (std, k) where the trained model made it (the prior is not scored)
        self.recent: OrderedDict[int, tuple[np.ndarray, tuple[np.ndarray, float] | None]] = OrderedDict()
        self.truth_n = 0
        self.truth_sum = np.zeros(self.target_dim)
        self.truth_sumsq = np.zeros(self.target_dim)
        self.batches = 0
        self.rmse_ema: float | None = None
        self.last_checkpoint = time.monotonic()
        self.warned_visible = False
        self.state_pub = self.publisher(ESTIMATOR_STATE, StateEstimate)
        self.published: OrderedDict[int, tuple[np.ndarray, np.ndarray, Any]] = OrderedDict()  # step -> mean, std,
        # and the (low, high) boxes of the interval belief: what the replay stream's rows get appended
        self.waiting_replay: list[TransitionBatch] = []  # replay messages that came before their observations
        self.replay_pub = self.publisher(ESTIMATOR_TRANSITIONS, TransitionBatch, reliable=True, buffer=64,
                                         coalesce=8)
        self.subscribe(ENV_OBS, Observation, self.on_obs, qos="reliable(4)")
        self.subscribe(ENV_TRANSITIONS, TransitionBatch, self.on_transitions, qos="reliable(8)")
        self.service("estimator.calibration", lambda args: self.calibration.figures(), read_only=True)

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / "checkpoints" / "estimator.safetensors" if self.run_dir else None

    def build(self, obs_dim: int) -> None:
        from nodes.estimator.model import EstimatorConfig, OnlineTrainer, StateEstimator
        from persist_rt.checkpoint import CheckpointError

        config = EstimatorConfig(obs_dim=obs_dim, target_dim=self.target_dim, hidden=self.hidden, lr=self.lr,
                                 batch_size=self.batch_size, chunk_len=self.chunk_len, seed=self.seed,
                                 device=self.device)
        self.estimator = StateEstimator(config)
        self.trainer = OnlineTrainer(self.estimator, max_len=self.max_episode_len, capacity_steps=self.capacity_steps)
        self.log.info("estimator_ready", obs_dim=obs_dim, target_dim=self.target_dim, device=str(self.estimator.device))
        path = self.checkpoint_path
        if path is not None and path.exists():
            try:
                self.estimator.load(path)
            except CheckpointError as exc:  # another architecture: start afresh, say why
                self.log.error("checkpoint_refused", path=str(path), error=str(exc))
                self.count("checkpoints_refused")
            else:
                self.log.info("resumed", path=str(path), updates=self.estimator.num_updates)
                self.count("resumes")
        self.gauge("updates", self.estimator.num_updates)

    @property
    def trained(self) -> bool:
        """Whether the belief is more than the prior: always for the interval belief (it needs no training)."""
        return self.interval is not None or (self.estimator is not None and self.estimator.num_updates > 0)

    # --- estimating -------------------------------------------------------------------------

    def on_obs(self, msg: Observation) -> None:
        if msg.internal is not None and not self.warned_visible:
            self.warned_visible = True  # the estimator still runs, but the env is not hiding anything
            self.log.warning("internal_visible", hint="the env publishes the internal variables: "
                             "set its config partial_observability: true")
        box = None
        if self.interval is not None:
            if msg.obs.shape[1] < 4:
                self.count("rejected.obs_dim")
                self.log.error("obs_dim_mismatch", got=msg.obs.shape[1], expected=">= 4", step=msg.step)
                return
            box = self.interval.advance(msg.step, msg.obs, msg.episode_step)
            mean, std = as_estimate(*box)
        else:
            mean_std = self.learned_estimate(msg)
            if mean_std is None:
                return
            mean, std = mean_std
        trained = self.trained
        cal = self.calibration
        k, calibrated = cal.k, trained and cal.calibrated
        self.state_pub.publish(StateEstimate(step=msg.step, mean=mean, std=std, k=k, coverage=cal.coverage,
                                             calibrated=calibrated), step=msg.step)
        self.recent[msg.step] = (mean, (std, k) if trained else None)
        self.published[msg.step] = (mean, std, box)
        for kept in (self.recent, self.published):
            while len(kept) > KEEP_ESTIMATES:
                kept.popitem(last=False)
        if self.waiting_replay and self.waiting_replay[0].step + self.waiting_replay[0].steps <= msg.step + 1:
            waiting, self.waiting_replay = self.waiting_replay, []
            for held in waiting:
                self.on_transitions(held)
        self.count("estimates")
        self.count("estimates_uncalibrated", 0 if calibrated else 1)
        self.gauge("mean_std", float(std.mean()))

    def learned_estimate(self, msg: Observation) -> tuple[np.ndarray, np.ndarray] | None:
        """The GRU's (mean, std) for this observation (the prior until it trained); None if refused."""
        if self.estimator is None:
            self.build(msg.obs.shape[1])
        n, obs_dim = msg.obs.shape
        if obs_dim != self.estimator.config.obs_dim:
            self.count("rejected.obs_dim")
            self.log.error("obs_dim_mismatch", got=obs_dim, expected=self.estimator.config.obs_dim, step=msg.step)
            return None
        if self.hidden_state is None or self.hidden_state.shape[1] != n:
            self.hidden_state = self.estimator.initial_hidden(n)  # first step, or a new set of arenas
        self.hidden_state = self.estimator.reset_hidden(self.hidden_state, msg.episode_step == 0)
        # a copy: arrays decoded from the wire are read-only views, which torch refuses to wrap
        mean, std, self.hidden_state = self.estimator.step(np.array(msg.obs), self.hidden_state)
        if not self.trained:
            mean, std = self.prior(n)
        return np.asarray(mean, np.float32), np.maximum(np.asarray(std, np.float32), 0.0)

    def prior(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.truth_n == 0:
            return np.full((n, self.target_dim), PRIOR_MEAN), np.full((n, self.target_dim), PRIOR_STD)
        mean = self.truth_sum / self.truth_n
        std = np.sqrt(np.maximum(self.truth_sumsq / self.truth_n - mean**2, 0.0))
        return np.tile(mean, (n, 1)), np.tile(np.maximum(std, MIN_STD), (n, 1))

    # --- learning ---------------------------------------------------------------------------

    def on_transitions(self, msg: TransitionBatch) -> None:
        if msg.step + msg.steps - 1 > next(reversed(self.published), -1):
            # the replay stream overtook the observations (separate streams): score and republish it once the
            # estimates of its steps are out
            self.waiting_replay.append(msg)
            return
        self.republish(msg)
        if msg.internal is None:
            self.count("rejected.no_truth")
            return
        n = msg.arenas
        if self.interval is not None:  # nothing to learn: score the published boxes against the truth
            for s in range(msg.steps):
                self.score(msg.step + s, msg.internal[s * n : (s + 1) * n])
            return
        if self.estimator is None:
            self.build(msg.obs.shape[1])
        ended = msg.terminated | msg.truncated
        for s in range(msg.steps):  # one env step at a time: the trainer follows each arena's episode
            rows = slice(s * n, (s + 1) * n)
            self.learn_step(msg.step + s, msg.obs[rows], msg.internal[rows], ended[rows])
        if self.checkpoint_every_s and time.monotonic() - self.last_checkpoint > self.checkpoint_every_s:
            self.save_checkpoint()

    def republish(self, msg: TransitionBatch) -> None:
        """The replay stream with the belief appended to ``obs`` (the estimate the agent acted on at that step)
        and to ``next_obs`` (the interval belief propagated through it; the learned belief of the next step, or
        of this one where that is not out yet). A message with a step whose estimate is gone is dropped."""
        n = msg.arenas
        obs, next_obs = [], []
        for s in range(msg.steps):
            published = self.published.get(msg.step + s)
            rows = slice(s * n, (s + 1) * n)
            if published is None or published[0].shape[0] != n:
                self.count("replay_unmatched", msg.steps)
                return
            mean, std, box = published
            if box is not None:
                mean2, std2 = as_estimate(*self.interval.propagate(box[0], box[1], msg.next_obs[rows]))
            else:
                mean2, std2, _ = self.published.get(msg.step + s + 1, published)
            obs.append(with_belief(msg.obs[rows], mean, std))
            next_obs.append(with_belief(msg.next_obs[rows], mean2, std2))
        fields = {name: getattr(msg, name) for name in msg.__struct_fields__}
        fields.update(obs=np.concatenate(obs), next_obs=np.concatenate(next_obs))
        self.replay_pub.publish(TransitionBatch(**fields), step=msg.step)
        self.count("replay_republished", msg.steps)

    def learn_step(self, step: int, obs: np.ndarray, truth: np.ndarray, ended: np.ndarray) -> None:
        try:
            self.trainer.add(obs, truth, ended)
        except ValueError as exc:
            self.count("rejected.transitions")
            self.log.error("transitions_rejected", step=step, error=str(exc))
            return
        self.truth_n += truth.shape[0]
        self.truth_sum += truth.sum(axis=0)
        self.truth_sumsq += (truth.astype(np.float64) ** 2).sum(axis=0)
        self.score(step, truth)
        self.batches += 1
        if self.batches % self.train_every == 0:
            loss = self.trainer.train()
            if loss is not None:
                self.gauge("loss", loss)
            self.gauge("updates", self.estimator.num_updates)
            self.gauge("episodes_stored", len(self.trainer.episodes))

    def score(self, step: int, truth: np.ndarray) -> None:
        """RMSE of the estimate published for ``step`` against the truth (smoothed), and the coverage of its
        confidence box (``Calibration``), for telemetry."""
        published = self.recent.get(step)
        if published is None or published[0].shape != truth.shape:
            return
        mean, model = published
        rmse = float(np.sqrt(np.mean((mean - truth) ** 2)))
        self.rmse_ema = rmse if self.rmse_ema is None else 0.95 * self.rmse_ema + 0.05 * rmse
        self.gauge("estimate_rmse", self.rmse_ema)
        if model is not None:
            cal = self.calibration
            cal.score(mean, model[0], model[1], truth)
            self.gauge("coverage", cal.coverage)
            self.gauge("k", cal.k)
            self.gauge("calibrated", float(cal.calibrated))
            self.gauge("coverage_scored", cal.samples)

    def save_checkpoint(self) -> None:
        path = self.checkpoint_path
        self.last_checkpoint = time.monotonic()
        if path is None or self.estimator is None or not self.trained:
            return  # nothing learned yet: an untrained checkpoint would only hide the prior
        self.estimator.save(path)
        self.count("checkpoints")

    def on_shutdown(self) -> None:
        self.save_checkpoint()
