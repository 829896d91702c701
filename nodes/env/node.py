"""Env nodes: step N arenas, execute only the shield's safe actions, and keep the books.

Lockstep (default): publish ``env/obs`` for step t, wait for ``action/safe`` of step t up to
``deadline_s``; on a miss apply the declared ``fallback`` for that step and count it. Real time:
step at ``rate_hz`` with whatever safe action arrived, else the fallback.

With ``total_steps`` set, the env is the run's main job: it trains for that many arena-steps, then runs the
experiment protocol (nodes/experiment, docs/experiment.md): selection of a kept policy, unshielded
evaluations of the policy, a random and (where the kind has one) a scripted baseline, a shielded evaluation,
then ``summary.json``, the learning curve and the report, and stops. The env steps every phase, applies its
fallback and keeps the books; the protocol says which phase comes next and sets up the agent and the shield
for it. The scripted baseline is stepped by the env alone.

``EnvNode`` holds the loop, the fallback and the books; a subclass supplies the arenas:
``GridLifeNode`` (kind ``gridlife``) and ``GymNode`` (kind ``gym``, any registered Gymnasium env).
Actions on the wire are always in [-1, 1]^act_dim; a subclass maps them to its own action space.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from nodes.env import resume
from nodes.env.gridlife import INTERNAL_NAMES, GridLifeBatch, GridLifeConfig, read_only
from nodes.env.reward import RewardTerms
from nodes.env.step import StepResult
from nodes.experiment import (
    EVAL_PHASES,
    SCRIPTED_PHASES,
    UNSHIELDED_PHASES,
    ArenaFacts,
    Books,
    Experiment,
    Phase,
    Settings,
    Training,
)
from persist_rt import Node, Param
from persist_rt.checkpoint import CheckpointError
from persist_rt.qos import LOCKSTEP
from protocols import MODE_PASS, EpisodeEvents, Observation, SafeAction, TransitionBatch
from protocols.topics import ACTION_SAFE, ENV_EPISODES, ENV_OBS, ENV_TRANSITIONS

if TYPE_CHECKING:
    from nodes.shield.backup import Gatekeeper

FALLBACKS = ("hold", "zero", "seek_station", "backup")
GYM_FALLBACKS = ("zero", "hold")
REWARD_PARAMS = frozenset(("lambda_task", "lambda_homeo", "death_penalty", "homeo_discount", "token_shaping",
                           "intervention_penalty"))  # the parameters that set RewardTerms
SCRIPTED_SLICE_S = 0.02  # a scripted phase steps for this long per tick, then lets the executor serve the rest


class EnvNode(Node):
    """The env loop shared by every env kind. Subclasses declare ``fallback`` and fill in the hooks."""

    num_envs = Param(16, "arenas stepped together", ge=1, read_only=True)
    seed = Param(0, "seed of the training arenas", ge=0)
    total_steps = Param(0, "training budget in arena-steps; 0 runs until stopped", ge=0)
    mode = Param("lockstep", "lockstep or realtime", choices=("lockstep", "realtime"))
    rate_hz = Param(50.0, "steps per second in realtime mode", gt=0)
    deadline_s = Param(1.0, "how long a lockstep step waits for the safe action", gt=0)
    wait_for = Param(["agent", "shield"], "nodes that must be connected before the first step")
    eval_episodes = Param(16, "episodes per evaluation (one per arena)", ge=0)
    eval_seed = Param(10_000, "seed of the evaluation arenas", ge=0)
    agent_node = Param("agent", "agent node to switch between train/eval/random ('' for none)")
    shield_node = Param("shield", "shield node to bypass during unshielded evaluation ('' for none)")
    learner_node = Param("", "learner whose learner.summary (config, train figures) joins summary.json ('' for none)")
    publish_transitions = Param(True, "publish the replay stream")
    replay_steps = Param(8, "env steps per replay-stream message: its consumers decode one message per this many "
                         "steps (a training phase's last message may hold fewer)", ge=1)
    intervention_penalty = Param(0.0, "reward subtracted when the shield changed the action: a shielded "
                                 "agent otherwise never learns what the shield kept from it", ge=0)
    select_policy = Param(False, "before evaluating, run each policy the agent kept on `select_seed` arenas "
                          "(unshielded, deterministic) and evaluate the one that survived longest")
    select_seed = Param(20_000, "seed of the selection arenas (not the evaluation's)", ge=0)
    select_episodes = Param(64, "episodes per kept policy in the selection (one per arena): more than an "
                            "evaluation's, so that policies that all survive a few episodes still differ", ge=1)
    books_every_s = Param(5.0, "seconds between saves of the training books, which a respawned env resumes "
                          "(nodes/env/resume.py)", gt=0)
    learn_from_proposals = Param(False, "where the shield changed the action, the replay stream carries the "
                                 "agent's proposal instead of the executed action, so the penalty lands on it")
    evaluate_only = Param(False, "no training: run the evaluation phases with the policy the agent holds "
                          "(`persist eval`)", read_only=True)

    fallback: str
    act_dim: int  # action dimension on the wire, set by build_sim
    has_drive = False  # whether episodes end with a homeostatic drive worth reporting
    has_tokens = False  # whether steps count collected tokens (``StepResult.tokens``)
    has_scripted = False  # whether ``scripted_actions`` gives a scripted controller (the scripted baseline)

    # --- what a subclass supplies ---------------------------------------------------------------

    def setup(self) -> None:
        """Read and check the subclass's parameters (errors name the field)."""

    def build_sim(self, num_envs: int) -> None:
        """Create ``num_envs`` arenas (replacing any previous ones)."""
        raise NotImplementedError

    def reset_sim(self, seed: int) -> None:
        raise NotImplementedError

    @property
    def arenas(self) -> int:
        raise NotImplementedError

    def observation(self) -> Observation:
        """The message for the current state, at ``self.step_id``."""
        raise NotImplementedError

    def step_sim(self, actions: np.ndarray) -> StepResult:
        """Step every arena with ``actions`` in [-1, 1]^act_dim (already checked); the result's ``reward``
        composed by ``reward_terms`` (its rewards float32, as the replay stream sends them)."""
        raise NotImplementedError

    def build_reward(self) -> RewardTerms:
        """The reward's weights from the parameters (built at configure and on every change of one of them)."""
        return RewardTerms(intervention_penalty=self.intervention_penalty)

    def own_fallback(self) -> np.ndarray:
        """Fallbacks other than ``zero`` and ``hold``."""
        raise ValueError(f"fallback: {self.fallback!r} is not available for node kind {self.kind}")

    def scripted_actions(self) -> np.ndarray:
        """The kind's scripted controller for the current state (the ``baseline_scripted`` phase)."""
        raise NotImplementedError

    def death_cause(self, outcome: StepResult, i: int) -> str:
        broken = [name for name, m in outcome.margins.items() if m[i] < 0]
        return ",".join(broken) or "terminated"

    def end_drives(self, outcome: StepResult, idx: np.ndarray) -> np.ndarray | None:
        return None

    @property
    def episode_cap(self) -> int:
        return 0

    @property
    def train_episode_cap(self) -> int:
        """The cap of training episodes (the learning curve's ceiling): the evaluation's, unless a kind sets its own."""
        return self.episode_cap

    @property
    def sim_dt(self) -> float:
        return 1.0

    def summary_extra(self) -> dict[str, Any]:
        """Figures of the kind that join summary.json; a mapping under a key the protocol writes too (``train``)
        is merged into it."""
        return {}

    def bypass_nodes(self) -> tuple[str, ...]:
        """Nodes besides the shield that the unshielded evaluations bypass (their ``bypass`` parameter)."""
        return ()

    # --- lifecycle --------------------------------------------------------------------------

    def on_configure(self) -> None:
        self.setup()
        self.reward_terms = self.build_reward()
        self.phase = "train" if self.total_steps > 0 or self.evaluate_only else "run"
        self.build_sim(self.num_envs)
        self.obs_pub = self.publisher(ENV_OBS, Observation, reliable=True)
        # the replay stream goes out in batches: `replay_steps` steps per message, 8 messages per send, so its
        # consumers decode once per few steps and wake once per batch
        self.transitions_pub = self.publisher(ENV_TRANSITIONS, TransitionBatch, reliable=True, buffer=64,
                                              coalesce=8)
        self.replay: list[dict[str, np.ndarray | None]] = []  # the fields of steps not published yet
        self.replay_step = 0  # the first of them
        self.episodes_pub = self.publisher(ENV_EPISODES, EpisodeEvents)
        self.subscribe(ACTION_SAFE, SafeAction, self.on_safe_action, qos=LOCKSTEP)
        self.step_id = 0
        self.waiting_since = 0.0
        self.started = False
        self.books: dict[str, Books] = {self.phase: Books()}
        # per ended training episode: (env_steps, length, return, task return, homeostatic return)
        self.curve: list[tuple[int, int, float, float, float]] = []
        self.recent: deque[int] = deque(maxlen=50)
        self.recent_returns: deque[float] = deque(maxlen=50)
        self.reset_episode_books(self.arenas)
        self.pending: SafeAction | None = None  # realtime mode: the newest safe action for this step
        self.t_start = time.monotonic()
        self.train_wall_s: float | None = None  # set when training ends
        self.version_steps: dict[int, int] = {}  # policy version -> training env steps when it first acted
        settings = Settings(self.seed, self.arenas, self.eval_episodes, self.eval_seed, self.select_policy,
                            self.select_seed, self.select_episodes, self.agent_node, self.shield_node,
                            self.learner_node, self.bypass_nodes())
        facts = ArenaFacts(self.episode_cap, self.train_episode_cap, self.has_drive, self.has_tokens,
                           self.has_scripted)
        self.experiment = Experiment(settings, facts, self.call_peer, self.log, self.run_dir)
        period = self.deadline_s if self.mode == "lockstep" else 1.0 / self.rate_hz
        self.timer(min(0.05, period / 4), self.tick)
        self.gauge("progress.total", self.total_steps)
        self.books_path = self.run_dir / "checkpoints" / "env_books.safetensors" if self.run_dir else None
        self.next_books_save = 0.0
        if self.books_path is not None and self.phase == "train" and not self.evaluate_only:
            self.resume_books()

    def resume_books(self) -> None:
        """A respawned env carries on with the books it saved last (the steps since then are not in them)."""
        try:
            found = resume.load(self.books_path, Books)
        except CheckpointError as exc:
            self.count("books_unusable")
            self.log.error("books_unusable", error=str(exc))
            return
        if found is None:
            return
        self.books["train"], self.step_id, self.curve, used, refusals = found
        self.count("books_resumed")
        self.log.warning("books_resumed", env_steps=self.books["train"].env_steps, step=self.step_id, file=str(used),
                         refused=refusals)

    def save_books(self) -> None:
        if self.books_path is not None and "train" in self.books:
            resume.save(self.books_path, self.books["train"], self.step_id, self.curve)

    def on_param_change(self, name: str, old: Any, new: Any) -> None:
        if name in REWARD_PARAMS:
            self.reward_terms = self.build_reward()  # a ValueError refuses the change, naming the field

    def reset_episode_books(self, n: int) -> None:
        self.ep_return = np.zeros(n)
        self.ep_task_return = np.zeros(n)
        self.ep_homeo_return = np.zeros(n)
        self.ep_tokens = np.zeros(n, np.int64)
        self.last_action = np.zeros((n, self.act_dim), np.float32)
        self.alive = np.ones(n, bool)  # evaluation: arenas still in their first episode

    def on_shutdown(self) -> None:
        self.publish_replay()  # a run stopped mid-batch: the steps held go out with the close's drain
        if self.phase == "train":
            self.save_books()
        if self.phase not in ("done", "run") and self.total_steps:
            self.log.warning("stopped_before_end", phase=self.phase, env_steps=self.books["train"].env_steps)
        if self.run_dir is not None and self.total_steps and self.phase != "done":
            self.write_summary()  # partial: the run was stopped before its end

    # --- the loop ---------------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        if not self.started:
            missing = self.missing_peers()
            if missing:
                self.gauge("waiting_for_peers", len(missing))
                return
            self.started = True
            self.gauge("waiting_for_peers", 0)
            self.t_start = now
            self.log.info("start", num_envs=self.num_envs, total_steps=self.total_steps, mode=self.mode)
            if self.evaluate_only:  # straight to the first evaluation phase, its peers set up
                if self.advance_phase():
                    self.publish_obs()
                return
            self.reset_sim(self.seed + self.restarts)  # a respawned env meets new start states, not the same again
            self.publish_obs()
            return
        if self.phase == "done":
            return
        if self.phase in SCRIPTED_PHASES:
            while self.phase in SCRIPTED_PHASES and time.monotonic() - now < SCRIPTED_SLICE_S:
                self.execute(self.scripted_actions(), source="scripted", safe=None)
            return
        if self.phase == "train" and now >= self.next_books_save:
            self.next_books_save = now + self.books_every_s
            self.save_books()
        if self.mode == "realtime":
            if now - self.waiting_since >= 1.0 / self.rate_hz:
                pending, self.pending = self.pending, None
                if pending is None:
                    self.count("deadline_misses")
                    self.execute(self.fallback_actions(), source="fallback", safe=None)
                else:
                    self.execute(pending.actions, source="shield", safe=pending)
        elif now - self.waiting_since >= self.deadline_s:
            self.count("deadline_misses")
            self.execute(self.fallback_actions(), source="fallback", safe=None)

    def peers(self) -> list[str]:
        """Nodes that must read ``env/obs`` before the first step."""
        return list(self.wait_for)

    def missing_peers(self) -> list[str]:
        matched = set(self.obs_pub.matched())
        return [n for n in self.peers() if n not in matched]

    def publish_obs(self) -> None:
        if self.phase in SCRIPTED_PHASES:
            return  # nobody else acts in this phase
        self.waiting_since = time.monotonic()
        self.obs_pub.publish(self.observation(), step=self.step_id, sim_time=self.step_id * self.sim_dt)

    def on_safe_action(self, msg: SafeAction) -> None:
        if self.phase == "done" or self.phase in SCRIPTED_PHASES or not self.started:
            return
        if msg.step != self.step_id or msg.actions.shape != (self.arenas, self.act_dim):
            self.count("stale_or_misshapen_actions")
            if msg.step == self.step_id:
                self.log.warning("misshapen_action", step=msg.step, shape=list(msg.actions.shape),
                                 expected=[self.arenas, self.act_dim])
            return
        if self.mode == "realtime":
            self.pending = msg
            return
        self.execute(msg.actions, source="shield", safe=msg)

    def fallback_actions(self) -> np.ndarray:
        if self.fallback == "zero":
            return np.zeros((self.arenas, self.act_dim), np.float32)
        if self.fallback == "hold":
            return self.last_action.copy()
        return self.own_fallback()

    def execute(self, actions: np.ndarray, source: str, safe: SafeAction | None) -> None:
        """Step the arenas once with ``actions``; invalid rows are replaced by the fallback."""
        books = self.books[self.phase]
        n = self.arenas
        actions = np.array(actions, dtype=np.float32)
        from_fallback = np.full(n, source == "fallback")
        invalid = ~(np.abs(actions) <= 1.0).all(axis=1)  # NaN and inf fail the comparison too
        if invalid.any():
            self.count("invalid_actions", int(invalid.sum()))
            self.log.warning("invalid_action_replaced", arenas=np.flatnonzero(invalid).tolist()[:8], step=self.step_id)
            actions[invalid] = self.fallback_actions()[invalid]
            from_fallback |= invalid
        result = self.step_sim(actions)
        self.last_action = actions
        step = self.step_id
        self.step_id += 1

        counted = self.alive if self.phase in EVAL_PHASES else np.ones(n, bool)
        books.env_steps += int(counted.sum())
        # in training the next step starts before the books: they, and the replay stream below, overlap the
        # agent's and the shield's work (an evaluation's end depends on the episodes recorded below)
        early = self.phase in ("train", "run") and not self.phase_over(books)
        if early:
            self.publish_obs()
        books.fallback_steps += int((from_fallback & counted).sum())
        books.executed_steps += int((~from_fallback & counted).sum())
        interventions = 0
        if safe is not None:
            interventions = int(((safe.mode != MODE_PASS) & counted & ~from_fallback).sum())
            books.shield_interventions += interventions
        books.interventions_per_step.append(interventions)
        if self.phase == "train" and safe is not None:
            self.version_steps.setdefault(safe.policy_version, books.env_steps)
        violations = int((result.violation & counted).sum())
        if violations:
            books.violations_executed += violations
            # an unshielded evaluation measures violations (the summary counts them): the log file keeps each one,
            # the console only those of a shielded phase, where a violation is a safety failure
            log = self.log.debug if self.phase in UNSHIELDED_PHASES else self.log.warning
            log("violation_executed", step=step, arenas=int(violations), phase=self.phase)

        if safe is not None:
            self.reward_terms.penalise(result.reward, safe.mode != MODE_PASS)
        self.ep_return += result.reward
        self.ep_task_return += result.task_reward
        self.ep_homeo_return += result.homeo_reward
        if result.tokens is not None:
            self.ep_tokens += result.tokens
        self.record_episodes(result, counted, books, step)
        ongoing = early or not self.phase_over(books)
        if ongoing and not early:
            self.publish_obs()
        if self.phase in ("train", "run") and self.publish_transitions:
            if not self.replay:
                self.replay_step = step
            self.replay.append({
                "obs": result.obs, "actions": self.replay_actions(actions, safe, from_fallback),
                "reward": result.reward, "reward_task": result.task_reward, "reward_homeo": result.homeo_reward,
                "next_obs": result.next_obs, "terminated": result.terminated, "truncated": result.truncated,
                "internal": result.internal, "next_internal": result.next_internal,
            })
            if len(self.replay) >= self.replay_steps or not ongoing:
                self.publish_replay()
        if not ongoing and self.advance_phase():
            self.publish_obs()

    def publish_replay(self) -> None:
        """Send the steps held for the replay stream as one message."""
        held, self.replay = self.replay, []
        if held:
            self.transitions_pub.publish(pack_replay(self.replay_step, held), step=self.replay_step)

    def replay_actions(self, executed: np.ndarray, safe: SafeAction | None, from_fallback: np.ndarray) -> np.ndarray:
        """The actions the replay stream carries: the executed ones, except (with `learn_from_proposals`) where
        the shield changed the agent's proposal. There the proposal goes in, with the executed step's reward,
        the intervention penalty and next state: the agent then learns that its own action was overridden,
        instead of crediting the shield's action, and learns to propose safe actions itself."""
        if not self.learn_from_proposals or safe is None or safe.proposed is None:
            return executed
        changed = (safe.mode != MODE_PASS) & ~from_fallback
        return np.where(changed[:, None], safe.proposed, executed).astype(np.float32)

    def record_episodes(self, result: StepResult, counted: np.ndarray, books: Books, step: int) -> None:
        done = result.done & counted
        if not done.any():
            return
        idx = np.flatnonzero(done)
        drive = self.end_drives(result, idx)
        causes = [self.death_cause(result, int(i)) if result.terminated[i] else "" for i in idx]
        for j, i in enumerate(idx):
            books.episodes += 1
            books.lengths.append(int(result.episode_steps[i]))
            books.returns.append(float(self.ep_return[i]))
            books.task_returns.append(float(self.ep_task_return[i]))
            books.homeo_returns.append(float(self.ep_homeo_return[i]))
            books.tokens.append(int(self.ep_tokens[i]))
            books.died.append(bool(result.terminated[i]))
            if causes[j]:
                books.deaths[causes[j]] = books.deaths.get(causes[j], 0) + 1
            if drive is not None:
                books.drives.append(float(drive[j]))
            if self.phase in ("train", "run"):  # the progress gauges follow training, not evaluation
                self.recent.append(int(result.episode_steps[i]))
                self.recent_returns.append(float(self.ep_return[i]))
            if self.phase == "train":
                self.curve.append((books.env_steps, int(result.episode_steps[i]), float(self.ep_return[i]),
                                   float(self.ep_task_return[i]), float(self.ep_homeo_return[i])))
        self.episodes_pub.publish(
            EpisodeEvents(
                step=step,
                arena=idx.astype(np.int64),
                length=result.episode_steps[idx].astype(np.int64),
                ret=self.ep_return[idx].astype(np.float32),
                task_return=self.ep_task_return[idx].astype(np.float32),
                died=result.terminated[idx].copy(),
                cause=causes,
            )
        )
        self.ep_return[idx] = 0.0
        self.ep_task_return[idx] = 0.0
        self.ep_homeo_return[idx] = 0.0
        self.ep_tokens[idx] = 0
        if self.phase in EVAL_PHASES:
            self.alive[idx] = False

    def refresh(self) -> None:
        self.update_gauges()

    def update_gauges(self) -> None:
        train = self.books.get("train") or self.books.get("run")
        if train is None:
            return
        self.gauge("progress.steps", train.env_steps)
        self.gauge("episodes", train.episodes)
        self.gauge("mean_survival", float(np.mean(self.recent)) if self.recent else 0.0)
        self.gauge("mean_return", float(np.mean(self.recent_returns)) if self.recent_returns else 0.0)
        self.gauge("shield_interventions", train.shield_interventions)
        self.gauge("fallback_steps", train.fallback_steps)
        self.gauge("violations_executed", train.violations_executed)
        elapsed = time.monotonic() - self.t_start
        self.gauge("env_steps_per_s", train.env_steps / elapsed if elapsed > 0 else 0.0)
        self.gauge("phase_index", ("run", "train", *EVAL_PHASES, "done").index(self.phase))

    # --- phases -----------------------------------------------------------------------------

    def phase_over(self, books: Books) -> bool:
        if self.phase == "train":
            return books.env_steps >= self.total_steps
        if self.phase in EVAL_PHASES:
            return not self.alive.any()
        return False  # "run" goes on until stopped

    def advance_phase(self) -> bool:
        """Move on from a phase that is over; False when the run is finished."""
        self.update_gauges()  # the phase's final figures
        if self.phase == "train":
            self.save_books()  # a kill during evaluation resumes with the whole of training booked
        if self.train_wall_s is None:
            self.train_wall_s = time.monotonic() - self.t_start
            # let the learner consume the whole replay stream, so evaluation sees the trained policy
            if not self.transitions_pub.drain(timeout_s=60.0):
                self.log.warning("replay_stream_not_drained", timeout_s=60.0)
        phase = self.experiment.next_phase(self.phase, self.books)
        if phase is None:
            self.phase = "done"
            self.log.info("finished", summary=str(self.run_dir))
            self.write_summary()
            self.request_stop()
            return False
        self.start_episodes(phase)
        return True

    def start_episodes(self, phase: Phase) -> None:
        """One episode per arena from the phase's seed."""
        self.phase = phase.name
        books = self.books[phase.name] = Books()
        self.build_sim(phase.arenas)
        self.reset_sim(phase.seed)
        self.reset_episode_books(self.arenas)
        books.seed = phase.seed
        books.start_digest = hashlib.sha256(self.observation().obs.tobytes()).hexdigest()[:16]
        extra = {} if phase.version is None else {"version": phase.version}
        self.log.info("phase", phase=phase.name, episodes=phase.arenas, **extra)

    # --- summary ----------------------------------------------------------------------------

    def write_summary(self) -> None:
        if self.run_dir is None:
            return
        wall_s = self.train_wall_s if self.train_wall_s is not None else time.monotonic() - self.t_start
        training = Training(self.books.get("train", Books()), self.curve, self.version_steps)
        self.experiment.write_summary(self.books, training, wall_s, complete=self.phase == "done",
                                      extra=self.summary_extra())


class GridLifeNode(EnvNode):
    """GridLife arenas (docs/gridlife.md); under partial observability the env waits for the estimator too."""

    kind = "gridlife"

    fallback = Param("backup", "what executes on a missed deadline or an invalid action; `backup` is the shield's "
                     "certified backup policy, so arenas the shield left certified stay so without it",
                     choices=FALLBACKS)
    config = Param({}, "GridLife constants to override (see docs/gridlife.md)")
    lambda_homeo = Param(1.0, "weight of the homeostatic reward", ge=0)
    lambda_task = Param(1.0, "weight of the task reward", ge=0)
    death_penalty = Param(0.0, "reward added on death (negative)", le=0)
    homeo_discount = Param(1.0, "gamma of the homeostatic term the learner gets, D(h) - gamma D(h'): with the "
                           "learner's discount it is potential-based shaping (no optimal policy changes); plain "
                           "drive reduction (1.0) under discounting also charges (1 - gamma) D(h') per step",
                           gt=0, le=1)
    token_shaping = Param(0.0, "reward per metre the agent gets closer to its nearest token, kappa (d - gamma d') with "
                          "gamma = homeo_discount; a collected token counts as reached (d' = 0), so the next one "
                          "starts afresh (tokens are rare under random actions: this leads the critic to them)", ge=0)
    train_cap = Param(0, "training episodes end (truncated) after this many steps; 0: the config's episode_cap. "
                         "More, shorter episodes start from more states; evaluation always runs the full cap", ge=0)
    estimator_node = Param("estimator", "under partial observability, also wait for this node ('' for none)")

    has_drive = True
    has_tokens = True
    has_scripted = True
    act_dim = 2

    def setup(self) -> None:
        self.cfg = GridLifeConfig.from_params(self.config)
        self.backup_policy: Gatekeeper | None = None
        if self.fallback == "backup":
            # built and compiled (for the simulator's read-only views) now, not at the first missed deadline
            self.backup_actions(read_only(np.zeros((1, 2))), read_only(np.ones((1, 3))))

    def build_sim(self, num_envs: int) -> None:
        cfg = self.cfg
        if self.phase == "train" and self.train_cap:
            cfg = replace(cfg, episode_cap=self.train_cap)
        self.sim = GridLifeBatch(cfg, num_envs)
        self.current_obs = np.zeros((num_envs, self.sim.obs_dim), np.float32)  # until reset_sim
        self.token_dist = self.sim.obs_names.index("token_dist"), cfg.arena_size  # for token shaping

    def reset_sim(self, seed: int) -> None:
        self.current_obs = self.sim.reset(seed)

    @property
    def arenas(self) -> int:
        return self.sim.num_envs

    @property
    def episode_cap(self) -> int:
        return self.cfg.episode_cap

    @property
    def train_episode_cap(self) -> int:
        return self.train_cap or self.cfg.episode_cap

    @property
    def sim_dt(self) -> float:
        return self.cfg.dt

    def peers(self) -> list[str]:
        extra = [self.estimator_node] if self.cfg.partial_observability and self.estimator_node else []
        return [*self.wait_for, *extra]

    def summary_extra(self) -> dict[str, Any]:
        """Under partial observability, the estimator's calibration (its coverage against the truth)."""
        if not (self.cfg.partial_observability and self.estimator_node):
            return {}
        return {"estimator": self.call_peer(self.estimator_node, "estimator.calibration", {})}

    def observation(self) -> Observation:
        hidden = self.cfg.partial_observability
        return Observation(
            step=self.step_id,
            obs=self.current_obs,
            positions=self.sim.positions.copy(),  # copies: auto-reset rewrites the simulator's arrays in place
            internal=None if hidden else self.sim.internal.copy(),
            episode_step=np.asarray(self.sim.episode_steps, np.int64),
        )

    def own_fallback(self) -> np.ndarray:
        if self.fallback == "backup":  # induction: from a certified state the backup's step stays certified
            return self.backup_actions(self.sim.positions, self.sim.internal)
        return self.scripted_actions()

    def scripted_actions(self) -> np.ndarray:
        """The scripted station keeper (nodes/env/scripted.py) on the true state."""
        from nodes.env.scripted import seek_station_policy

        return seek_station_policy(
            self.sim.positions, self.sim.internal, self.sim.tokens, self.cfg, self.sim.layout
        ).astype(np.float32)

    def backup_actions(self, positions: np.ndarray, internal: np.ndarray) -> np.ndarray:
        """The shield's backup policy (geodesic tables and compiled kernels, built on first use)."""
        if self.backup_policy is None:
            from nodes.shield.backup import Gatekeeper

            self.backup_policy = Gatekeeper(self.cfg)
        return self.backup_policy.actions(positions, internal)

    def build_reward(self) -> RewardTerms:
        return RewardTerms(self.lambda_task, self.lambda_homeo, self.death_penalty, self.homeo_discount,
                           self.token_shaping, self.intervention_penalty)

    def step_sim(self, actions: np.ndarray) -> StepResult:
        return self.complete_step(self.sim.step(actions))

    def complete_step(self, result: StepResult) -> StepResult:
        """The simulator's step result with its reward composed, in the replay stream's dtypes."""
        # the observation to act on next is kept, not computed again: that costs as much as a third of the step
        self.current_obs = result.reset_obs
        self._end_internal = result.next_internal  # float64, for the end-of-episode drive
        result.reward = self.reward_terms.compose(result, self.sim.homeostat, self.token_dist)
        result.task_reward = result.task_reward.astype(np.float32)
        result.homeo_reward = result.homeo_reward.astype(np.float32)
        result.internal = result.internal.astype(np.float32)
        result.next_internal = result.next_internal.astype(np.float32)
        return result

    def death_cause(self, outcome: StepResult, i: int) -> str:
        broken = [name for name in INTERNAL_NAMES if outcome.margins[name][i] <= 0]
        return ",".join(broken) or "hazard"

    def end_drives(self, outcome: StepResult, idx: np.ndarray) -> np.ndarray | None:
        return self.sim.homeostat.drive(self._end_internal[idx])


class GymNode(EnvNode):
    """Any registered Gymnasium env with a Box action space, through ``GymBatch``.

    The agent's actions in [-1, 1] are mapped affinely onto the action box, so ``zero`` is its centre.
    Reward is the env's own (task) reward; viability margins come from ``constraint``. Observations
    carry no positions (zeros) and no internal variables: GridLife shields do not apply here.
    """

    kind = "gym"

    fallback = Param("zero", "what executes on a missed deadline or an invalid action", choices=GYM_FALLBACKS)
    env_id = Param("", "registered Gymnasium environment id, e.g. Pendulum-v1", read_only=True)
    constraint = Param("", "viability margins: module:function or path/to/file.py:function ('' for none)",
                       read_only=True)
    env_kwargs = Param({}, "keyword arguments of gymnasium.make", read_only=True)

    def setup(self) -> None:
        import gymnasium

        if not self.env_id:
            raise ValueError("env_id: required (a registered Gymnasium environment id)")
        if self.env_id not in gymnasium.registry:
            raise ValueError(f"env_id: {self.env_id!r} is not a registered Gymnasium environment")
        self.sim: Any = None
        self._cap = int(gymnasium.spec(self.env_id).max_episode_steps or 0)

    def build_sim(self, num_envs: int) -> None:
        from gymnasium import spaces

        from nodes.env.gym_adapter import GymBatch

        if self.sim is not None:
            self.sim.close()
        self.sim = GymBatch(self.env_id, num_envs, self.constraint or None, self.env_kwargs)
        space = self.sim.action_space
        if not isinstance(space, spaces.Box):
            raise ValueError(f"env_id: {self.env_id!r} has a {type(space).__name__} action space; "
                             "node kind gym needs a Box (continuous) action space")
        low, high = space.low.reshape(-1).astype(np.float64), space.high.reshape(-1).astype(np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"env_id: {self.env_id!r} has an unbounded action space {space}; "
                             "actions in [-1, 1] cannot be scaled onto it")
        self.act_dim = int(low.size)
        self.current_obs = np.zeros((num_envs, int(np.prod(self.sim.observation_space.shape))), np.float32)
        self.episode_steps = np.zeros(num_envs, np.int64)

    def reset_sim(self, seed: int) -> None:
        self.current_obs = self._flat(self.sim.reset(seed))
        self.episode_steps = np.zeros(self.sim.num_envs, np.int64)

    @property
    def arenas(self) -> int:
        return int(self.sim.num_envs)

    @property
    def episode_cap(self) -> int:
        return self._cap

    def summary_extra(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "constraint": self.constraint or None}

    def observation(self) -> Observation:
        n = self.sim.num_envs
        return Observation(step=self.step_id, obs=self.current_obs, positions=np.zeros((n, 2)),
                           internal=None, episode_step=self.episode_steps.copy())

    def step_sim(self, actions: np.ndarray) -> StepResult:
        result = self.sim.step(scale_to_box(actions, self.sim.action_space))
        self.current_obs = self._flat(result.reset_obs)
        self.episode_steps = np.where(result.done, 0, result.episode_steps).astype(np.int64)
        result.obs, result.next_obs = self._flat(result.obs), self._flat(result.next_obs)
        result.reset_obs = self.current_obs
        result.reward = self.reward_terms.compose(result)
        result.task_reward = result.task_reward.astype(np.float32)  # the replay stream's dtypes
        result.homeo_reward = result.homeo_reward.astype(np.float32)
        return result

    def on_shutdown(self) -> None:
        super().on_shutdown()
        if self.sim is not None:
            self.sim.close()

    @staticmethod
    def _flat(obs: np.ndarray) -> np.ndarray:
        return np.asarray(obs, np.float32).reshape(len(obs), -1)


def scale_to_box(actions: np.ndarray, space: Any) -> np.ndarray:
    """Actions in [-1, 1]^act_dim, one row per arena -> the bounded Box ``space`` (clipped against rounding)."""
    return BoxScale(space)(actions)


class BoxScale:
    """`scale_to_box` for one space, its bounds converted once (the shield scales every candidate it judges)."""

    def __init__(self, space: Any) -> None:
        self.low = space.low.reshape(1, -1).astype(np.float64)
        self.high = space.high.reshape(1, -1).astype(np.float64)
        self.half_span = 0.5 * (self.high - self.low)
        self.shape, self.dtype = space.shape, space.dtype

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        # ufuncs rather than np.clip: at a batch of one its overhead dominates
        box = np.minimum(np.maximum(self.low + (np.asarray(actions, np.float64) + 1.0) * self.half_span, self.low),
                         self.high)
        return box.reshape(len(actions), *self.shape).astype(self.dtype)


def pack_replay(first_step: int, held: list[dict[str, np.ndarray | None]]) -> TransitionBatch:
    """One replay message from the fields of consecutive steps (``first_step`` on), rows step-major."""
    fields = {name: None if value is None else np.concatenate([h[name] for h in held])  # type: ignore[misc]
              for name, value in held[0].items()}
    return TransitionBatch(step=first_step, steps=len(held), **fields)
