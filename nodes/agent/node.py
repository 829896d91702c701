"""The agent node: SAC actor inference on observation batches, proposing actions to the shield.

Modes: ``train`` (stochastic, follows the learner's weights; uniform-random actions until the first
weights arrive), ``eval`` (deterministic, weights frozen), ``random`` (uniform actions: the
baseline). Inference is numpy-only, so this process never imports torch.

Policies change only between steps (the executor is single-threaded), so step ids stay contiguous.

Partial observability (``use_estimate``): the policy acts on its belief, the observation with the
estimate of the same step appended (mean and std, ``with_belief``): the input the estimator's replay
stream carries for the learner. The agent proposes for step t only once the estimate of step t has
arrived, so the shield judges the proposal against that estimate (if none comes, the agent does not
propose and the shield's own proposal deadline decides). See docs/estimator.md.
Services: ``policy.swap {path, follow_learner}`` loads and validates a policy file and switches to it,
``policy.show`` says which policy acts, ``policy.save {path}`` writes it as a policy file. With ``keep_every``
the agent keeps one learner policy every that many versions (the newest ``keep_policies``) and always the
learner's newest weights: ``policy.kept`` lists their versions, ``policy.use {version}`` switches to one of
them and stops following the learner (the env's policy selection, or a rollback by hand).

``algorithm: mpc`` plans instead (nodes/mpc/planner.py: CEM scored by GridLife's known model and the shield's
barriers and backup), from the observation's true state; learner weights are then ignored. Its proposals go to
the shield like any other.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import replace
from typing import Any

import numpy as np

from nodes.estimator.inputs import with_belief
from nodes.sac.inference import make_inference_actor
from nodes.sac.policy_file import (
    CheckpointError,
    Policy,
    load_newest_policy,
    load_policy,
    policy_from_wire,
    save_policy,
)
from persist_rt import Node, Param
from persist_rt.qos import LOCKSTEP
from protocols import Observation, PolicyWeights, ProposedAction, StateEstimate
from protocols.topics import ACTION_PROPOSED, ENV_OBS, ESTIMATOR_STATE, POLICY_WEIGHTS


class AgentNode(Node):
    kind = "agent"

    mode = Param("train", "train (stochastic), eval (deterministic) or random", choices=("train", "eval", "random"))
    seed = Param(0, "seed of the exploration noise and of the random baseline's stream", ge=0)
    policy_file = Param("", "policy to start from (safetensors + JSON metadata)")
    follow_learner = Param(True, "take new weights from the learner as they arrive")
    use_estimate = Param(False, "propose for a step only once the estimator's estimate of it arrived")
    act_dim = Param(2, "action dimension of uniform-random actions (a policy's own act_dim wins)", ge=1)
    keep_every = Param(0, "keep one learner policy every this many versions (updates); 0 keeps none", ge=0)
    keep_policies = Param(6, "how many kept policies at most (the oldest goes first)", ge=1, read_only=True)
    algorithm = Param("sac", "sac or cvar_sac: act with the learner's actor; mpc: plan (reach-avoid CEM)",
                      choices=("sac", "cvar_sac", "mpc"), read_only=True)
    config = Param({}, "mpc: GridLife constants (must match the env's)", read_only=True)
    mpc_horizon = Param(12, "mpc: steps per planned action sequence", ge=1, read_only=True)
    mpc_population = Param(64, "mpc: sequences per arena and CEM iteration", ge=2, read_only=True)
    mpc_iterations = Param(3, "mpc: CEM iterations per step", ge=1, read_only=True)

    def on_configure(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.random_rng = self.baseline_stream()
        self.policy: Policy | None = None
        self.actor: Any = None
        self.kept: deque[Policy] = deque(maxlen=self.keep_policies)
        self.newest: Policy | None = None  # the learner's newest weights, still at hand after a switch
        self.estimate_step = -1  # the step of the newest estimate
        self.estimates: dict[int, StateEstimate] = {}  # the newest few, by step: the input of the step acted on
        self.waiting: Observation | None = None  # use_estimate: the observation waiting for its estimate
        self.planner: Any = self.make_planner() if self.algorithm == "mpc" else None
        self.proposals = self.publisher(ACTION_PROPOSED, ProposedAction, reliable=True)
        self.subscribe(ENV_OBS, Observation, self.on_obs, qos=LOCKSTEP)
        self.subscribe(POLICY_WEIGHTS, PolicyWeights, self.on_weights, qos="latest")
        if self.use_estimate:
            self.subscribe(ESTIMATOR_STATE, StateEstimate, self.on_estimate, qos="latest")
        if self.policy_file:
            policy, refusals = load_newest_policy(self.policy_file)
            if refusals:  # the newest file is corrupt: its previous copy is what acts
                self.log.warning("policy_file_fallback", source=policy.source, refused=refusals)
                self.count("policy_file_fallbacks")
            self.install(policy, "file")
        self.service("policy.swap", self.svc_swap)
        self.service("policy.show", lambda args: self.describe_policy(), read_only=True)
        self.service("policy.save", self.svc_save)
        self.service("policy.kept", lambda args: {"versions": self.kept_versions()}, read_only=True)
        self.service("policy.use", self.svc_use)

    # --- acting -----------------------------------------------------------------------------

    def on_estimate(self, msg: StateEstimate) -> None:
        self.estimate_step = msg.step
        self.estimates[msg.step] = msg
        if len(self.estimates) > 8:
            del self.estimates[min(self.estimates)]
        waiting = self.waiting
        if waiting is not None and waiting.step <= msg.step:
            self.waiting = None
            self.act(waiting)

    def on_obs(self, msg: Observation) -> None:
        if self.use_estimate and msg.step > self.estimate_step:
            self.waiting = msg  # a newer observation replaces one whose estimate never came
            return
        self.act(msg)

    def make_planner(self) -> Any:
        from nodes.env.gridlife import GridLifeConfig, obs_names
        from nodes.mpc.planner import CEMPlanner, MPCConfig

        env_cfg = GridLifeConfig.from_params(self.config)
        names = obs_names(env_cfg)
        self.token_cols = [names.index("token_dx"), names.index("token_dy")]  # the nearest token, / arena size
        cfg = MPCConfig(horizon=self.mpc_horizon, population=self.mpc_population, iterations=self.mpc_iterations,
                        elites=max(1, self.mpc_population // 8), seed=self.seed)
        return CEMPlanner(env_cfg, cfg)

    def act(self, msg: Observation) -> None:
        if self.planner is not None and self.mode != "random":
            actions = self.plan(msg)
        else:
            obs = msg.obs
            if self.use_estimate:
                est = self.estimates.get(msg.step)
                if est is None or est.mean.shape[0] != obs.shape[0]:
                    self.count("no_estimate_for_step")  # the shield's proposal deadline decides this step
                    return
                obs = with_belief(obs, est.mean, est.std)
            actions = self.propose(obs)
        version = self.policy.version if self.policy is not None and self.mode != "random" else 0
        self.proposals.publish(ProposedAction(step=msg.step, actions=actions, policy_version=version), step=msg.step)
        self.count("proposals", len(actions))

    def propose(self, obs: np.ndarray) -> np.ndarray:
        """The current mode's actions for a batch of observations: uniform in random mode (and in training
        before the first weights), else the policy's, stochastic in training and deterministic in eval."""
        if self.mode == "random" or self.actor is None:
            dim = self.policy.spec.act_dim if self.policy is not None else self.act_dim
            rng = self.random_rng if self.mode == "random" else self.rng
            return rng.uniform(-1.0, 1.0, size=(obs.shape[0], dim)).astype(np.float32)
        return np.asarray(self.actor.act(obs, deterministic=self.mode == "eval", rng=self.rng), np.float32)

    def plan(self, msg: Observation) -> np.ndarray:
        """MPC actions from the true state; under partial observability the setpoints stand in for the hidden
        internal variables (the shield still judges against its own estimate)."""
        internal = msg.internal if msg.internal is not None else \
            np.broadcast_to(np.asarray(self.planner.env_cfg.setpoints), (msg.obs.shape[0], 3))
        token = msg.positions + self.planner.env_cfg.arena_size * msg.obs[:, self.token_cols].astype(np.float64)
        return self.planner.plan(msg.positions, internal, token)

    def baseline_stream(self) -> np.random.Generator:
        """The random mode's own stream, from the seed alone: a random baseline draws the same actions in every
        run of a seed, however many draws training took before it."""
        return np.random.default_rng((self.seed, 1))

    def on_param_change(self, name: str, old: Any, new: Any) -> None:
        if name == "seed":
            self.rng = np.random.default_rng(new)
        if name == "seed" or (name == "mode" and new == "random"):
            self.random_rng = self.baseline_stream()  # each random evaluation starts the stream afresh

    # --- policies ---------------------------------------------------------------------------

    def on_weights(self, msg: PolicyWeights) -> None:
        if not self.follow_learner or self.mode != "train" or self.planner is not None:
            self.count("weights_ignored")
            return
        expected = self.policy.spec if self.policy is not None else None
        try:
            policy = policy_from_wire(msg.version, msg.spec, msg.tensors, expected, source=POLICY_WEIGHTS)
        except CheckpointError as exc:
            self.count("weights_rejected")
            self.log.error("weights_rejected", error=str(exc), version=msg.version)
            return
        self.install(policy, "learner")

    def install(self, policy: Policy, origin: str) -> dict[str, Any]:
        old = self.policy.version if self.policy is not None else None
        self.actor = make_inference_actor(policy)
        self.policy = policy
        self.gauge("policy_version", policy.version)
        if origin == "learner":
            self.newest = policy
            if self.keep_every and (not self.kept or policy.version >= self.kept[-1].version + self.keep_every):
                self.kept.append(policy)
        else:
            self.log.info("policy_installed", origin=origin, old_version=old, new_version=policy.version,
                          source=policy.source)
        return {"old_version": old, "new_version": policy.version, "source": policy.source}

    def svc_swap(self, args: dict[str, Any]) -> dict[str, Any]:
        path = args.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError("field `path` must name a policy file")
        expected = self.policy.spec if self.policy is not None else None
        policy = load_policy(path, expected)  # raises CheckpointError: the current policy stays
        result = self.install(policy, "swap")
        self.set_param("follow_learner", bool(args.get("follow_learner", False)))
        self.count("policy_swaps")
        return result

    def usable(self) -> list[Policy]:
        """The kept policies, oldest first, then the learner's newest weights if they are not among them."""
        kept = list(self.kept)
        if self.newest is not None and all(p.version != self.newest.version for p in kept):
            kept.append(self.newest)
        return kept

    def kept_versions(self) -> list[int]:
        return [p.version for p in self.usable()]

    def svc_use(self, args: dict[str, Any]) -> dict[str, Any]:
        version = args.get("version")
        policy = None if isinstance(version, bool) else next((p for p in self.usable() if p.version == version), None)
        if policy is None:
            raise ValueError(f"field `version`: no kept policy has version {version!r} (kept: {self.kept_versions()})")
        result = self.install(policy, "kept")
        self.set_param("follow_learner", False)  # or the learner's next weights would replace it
        return result

    def svc_save(self, args: dict[str, Any]) -> dict[str, Any]:
        """Write the policy the agent acts with as a policy file (what ``policy.swap`` loads)."""
        path = args.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise ValueError(f"field `path` must be an absolute file path, got {path!r}")
        if self.policy is None:
            raise ValueError("field `node`: no policy to save yet (the agent acts uniformly at random)")
        policy = replace(self.policy, metadata={**self.policy.metadata, "saved_from": self.name, "mode": self.mode})
        try:
            written = save_policy(path, policy)
        except OSError as exc:
            raise ValueError(f"field `path`: cannot write {path}: {exc.strerror or exc}") from None
        self.count("policy_saves")
        self.log.info("policy_saved", path=str(written), version=policy.version)
        return {"path": str(written), "version": policy.version, "source": policy.source}

    def describe_policy(self) -> dict[str, Any]:
        if self.policy is None:
            return {"version": None, "source": "uniform random (no policy yet)", "mode": self.mode}
        return {"version": self.policy.version, "source": self.policy.source, "mode": self.mode,
                "spec": self.policy.spec.to_dict(), "follow_learner": self.follow_learner,
                "kept": self.kept_versions()}
