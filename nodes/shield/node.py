"""The shield node: the only publisher of ``action/safe``, the one topic the env executes.

For each step it pairs the env's observation (true state, or the estimator's estimate with its
uncertainty under partial observability) with the agent's proposal and runs ``ShieldCore``. If the
proposal does not arrive within ``proposal_deadline_s`` it decides anyway, on stale input, which
``ShieldCore`` answers with the conservative fallback: the shield never fails open. Every
intervention is explained in ``<run_dir>/shield_reports.jsonl`` (written as it is decided) and on
``shield/report`` (held and sent every ``report_period_s``: one wake-up of its readers per period, not
per step).

One switch, bypass, forwards every proposal unchanged (mode pass, counted in ``bypassed_steps``); the
shield still publishes them, so the env keeps executing nothing but ``action/safe``. Two parameters turn
it on: ``bypass``, which the experiment protocol sets per phase (on for the unshielded evaluations), and
``enabled: false`` from the launch file, which holds it on for the whole run (the no-shield contrast run):
a phase that clears ``bypass`` does not bring in a shield the run left out.

The learned parts learn here, online: with ``internal_model: learned`` the model of the internal
variables is trained on consecutive observations and the actions this shield sent between them (it
verifies nothing until its calibrated error bound is finite); the amortised filter is labelled by its teacher QP on the
states and proposals the shield sees and takes over after ``amortise_after`` samples; the OOD
detector is fitted on the first ``ood_fit_after`` states and from then on routes unfamiliar states to
the fallback. The ensemble votes with the viability networks named in ``viability_files`` (for
example distilled from an HJ kernel by ``persist reach distill``). With ``viability_learn_after`` a
viability network is also fitted from experience: the visited states, perturbed across the edge of
viability and labelled by the gatekeeper's exact rollouts, with extra weight near the boundary; it is
fitted in a background thread, saved to the run directory and joins the ensemble's vote.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from nodes.env.gridlife import GridLifeConfig, crowded_world, start_box
from nodes.estimator.interval import IntervalBelief, worst_drift
from nodes.shield.barriers import WORST_DIRECTION, belief_corner, drifted_corner
from nodes.shield.core import CAUSES, FILTERS, ShieldConfig, ShieldCore
from nodes.shield.fallback import FALLBACK_POLICIES
from nodes.shield.filters import VOTE_RULES, AmortisedConfig, AmortisedFilter, EnsembleConfig, EnsembleFilter
from nodes.shield.internal_model import LearnedInternalModel
from nodes.shield.node_base import PairedShieldNode
from nodes.shield.ood import EnergyOOD
from nodes.shield.state import STATE_NAMES, state_matrix
from persist_rt import Param
from protocols import MODE_PASS, Observation, SafeAction, StateEstimate
from protocols.topics import ESTIMATOR_STATE


class ShieldNode(PairedShieldNode):
    kind = "shield"

    filter = Param("qp", "qp, search, amortised or ensemble", choices=FILTERS, read_only=True)
    fallback = Param("seek_station", "conservative fallback policy", choices=FALLBACK_POLICIES, read_only=True)
    config = Param({}, "GridLife constants: must match the env's", read_only=True)
    station_crowd = Param(1, "bodies that may share one station (multi-agent GridLife): the model the shield "
                          "certifies with serves each min(1, station_capacity / station_crowd) of a station's rate",
                          ge=1, read_only=True)
    station_capacity = Param(1.0, "the multi-agent world's station_capacity (with station_crowd)", gt=0,
                             read_only=True)
    use_estimate = Param(False, "take internal variables from the estimator (partial observability)")
    amortise_after = Param(5000, "labelled samples before the amortised network acts", ge=1, read_only=True)
    amortise_train_steps = Param(1, "amortised-network training steps per decision", ge=0)
    viability_files = Param([], "viability networks (safetensors) voting in the ensemble filter", read_only=True)
    vote = Param("veto_if_any_unsafe", "ensemble voting rule", choices=VOTE_RULES, read_only=True)
    viability_learn_after = Param(0, "visited states to fit a viability network on (0: off)", ge=0, read_only=True)
    internal_model = Param("known", "known (the env's equations) or learned (trained online)",
                           choices=("known", "learned"), read_only=True)
    model_train_every = Param(10, "steps between training rounds of the learned internal model", ge=1)
    ood_fit_after = Param(0, "states to fit the OOD detector on, then route OOD states to the fallback; 0: off",
                          ge=0, read_only=True)

    def on_configure(self) -> None:
        env_cfg = GridLifeConfig.from_params(self.config)
        cfg = ShieldConfig(filter=self.filter, fallback=self.fallback, input_deadline_s=self.input_deadline_s,
                           amortised=AmortisedConfig(min_samples=self.amortise_after),
                           ensemble=EnsembleConfig(vote=self.vote))
        models = []
        if self.viability_files:
            from nodes.shield.viability import load_viability  # torch: only when networks are used

            models = [load_viability(path)[0] for path in self.viability_files]
        self.learned_model = LearnedInternalModel(env_cfg) if self.internal_model == "learned" else None
        certified = crowded_world(env_cfg, self.station_crowd, self.station_capacity)  # the env's own at 1 and 1
        self.core = ShieldCore(certified, cfg, viability_models=models, internal_model=self.learned_model)
        self.drift = worst_drift(env_cfg)  # a missing estimate: the last one widened by this per step since
        start = start_box(env_cfg)
        self.start_corner = np.where(WORST_DIRECTION < 0, start[0], start[1])  # worst corner of every start state
        self.last_estimate: StateEstimate | None = None  # the newest calibrated estimate
        self.interval = IntervalBelief(env_cfg)  # carries its box on through steps without an estimate
        self.carried: tuple[int, np.ndarray, np.ndarray] | None = None  # (step, low, high) of the certified box
        self.last_sent: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None  # step, pos, internal, action
        self.ood_states: list[np.ndarray] = []
        self.viability_states: list[np.ndarray] = []
        self.viability_fit: threading.Thread | None = None
        self.experience_net: Any = None
        self.estimate: StateEstimate | None = None
        self.start_io()
        if self.use_estimate:
            self.subscribe(ESTIMATOR_STATE, StateEstimate, self.on_estimate, qos="latest")

    # --- inputs -----------------------------------------------------------------------------

    def on_estimate(self, msg: StateEstimate) -> None:
        self.estimate = msg
        self.decide_when_ready()

    def inputs_complete(self, obs: Observation) -> bool:
        # the belief of a step whose internal variables the env hides
        return not (self.use_estimate and obs.internal is None
                    and (self.estimate is None or self.estimate.step != obs.step))

    # --- decision ---------------------------------------------------------------------------

    def decide(self, stale: bool = False) -> None:
        step = self.begin_step(stale, 2)
        if step is None:
            return
        obs, proposed, stale, version = step
        internal, std = self.internal_state(obs)
        age = float("inf") if stale else time.monotonic() - self.obs_wall
        self.learn_model(obs, internal)
        d = self.core.step(obs.step, obs.positions, internal, proposed, age, uncertainty=std)
        self.last_sent = (obs.step, obs.positions, internal, d.actions)
        constraint = [c or k or "" for c, k in zip(d.cause, d.constraint, strict=True)]
        self.safe_pub.publish(SafeAction(
            step=obs.step, actions=d.actions.astype(np.float32), mode=d.mode.astype(np.uint8),
            constraint=constraint, margin_before=d.margin_before.astype(np.float32),
            margin_after=d.margin_after.astype(np.float32), policy_version=version,
            proposed=None if stale else d.proposed.astype(np.float32)), step=obs.step)
        self.count("interventions", int((d.mode != MODE_PASS).sum()))
        self.learn(obs.positions, internal, proposed)  # after the publish: the env is not kept waiting
        if d.reports:
            self.report(obs.step, d.reports)

    def refresh(self) -> None:
        """The core's counts as gauges and headline status, derived only when they are sent."""
        counts = self.core.counts
        for cause in CAUSES:
            self.gauge(f"degraded.{cause}", counts[f"degraded.{cause}"])
        self.gauge("deadlocks_detected", counts["deadlocks_detected"])
        # the backup replacing the filter's action, and the rare backup that no rollout could certify
        self.gauge("gatekeeper.backup", counts["gatekeeper.backup"])
        self.gauge("gatekeeper.uncertified", counts["gatekeeper.uncertified"])
        self.status = {"interventions": int(self.counters.get("interventions", 0)),
                       "backup": counts["gatekeeper.backup"],
                       **{f"degraded.{c}": counts[f"degraded.{c}"] for c in CAUSES if counts[f"degraded.{c}"]}}

    def learn_model(self, obs: Observation, internal: np.ndarray) -> None:
        """Train the learned internal model on (h, a) -> h' from the previous step to this one."""
        model, last = self.learned_model, self.last_sent
        if model is None or last is None or last[0] != obs.step - 1 or not np.isfinite(internal).all():
            return
        cont = obs.episode_step > 0  # arenas that were reset in between carry no transition
        if cont.any():
            model.add(last[1][cont], last[2][cont], last[3][cont], internal[cont])
        if obs.step % self.model_train_every == 0 and model.regressor.stored:
            model.train(5)
            self.gauge("internal_model.ready", float(model.ready))
            self.gauge("internal_model.trained_on", model.trained_on)

    def learn(self, positions: np.ndarray, internal: np.ndarray, proposed: np.ndarray) -> None:
        """Online training of the learned parts, after the decision so that it never delays one."""
        if not np.isfinite(internal).all():
            return
        filt = self.core.filter
        if isinstance(filt, AmortisedFilter):
            filt.add_samples(positions, internal, proposed)
            if self.amortise_train_steps:
                filt.train(self.amortise_train_steps)
            self.gauge("amortised.enabled", float(filt.enabled))
            for key, value in filt.stats.items():
                self.gauge(f"amortised.{key}", value)
        if self.viability_learn_after and self.viability_fit is None:
            self.viability_states.append(state_matrix(positions, internal))
            if sum(len(s) for s in self.viability_states) >= self.viability_learn_after:
                states, self.viability_states = np.concatenate(self.viability_states), []
                self.viability_fit = threading.Thread(target=self.fit_viability, args=(states,), daemon=True)
                self.viability_fit.start()
        if self.experience_net is not None:
            self.install_experience_net()
        if self.ood_fit_after and self.core.ood is None:
            self.ood_states.append(state_matrix(positions, internal))
            if sum(len(s) for s in self.ood_states) >= self.ood_fit_after:
                self.core.ood = EnergyOOD().fit(np.concatenate(self.ood_states))
                self.ood_states = []
                self.log.info("ood_fitted", threshold=self.core.ood.threshold)
                self.gauge("ood.fitted", 1.0)

    def fit_viability(self, visited: np.ndarray) -> None:
        """Background thread: label perturbed visited states by exact rollouts, fit, hand the net over."""
        from nodes.shield.viability import ViabilityNet, fit_viability, save_viability

        gate = self.core.gatekeeper
        if gate is None:
            self.log.error("viability_learning_needs_the_gatekeeper")
            return
        rng = np.random.default_rng(0)
        samples = visited.repeat(4, axis=0)
        samples[:, 2:] = np.clip(samples[:, 2:] + rng.normal(0.0, 0.25, (len(samples), 3)), 0.0, 1.0)
        pos, h = samples[:, :2], samples[:, 2:]
        ok, _ = gate.certify(pos, h, gate.actions(pos, h))
        size = self.core.env_cfg.arena_size
        net = ViabilityNet(STATE_NAMES, [0, 0, 0, 0, 0], [size, size, 1, 1, 1])
        metrics = fit_viability(net, samples, np.where(ok, 1.0, -1.0), epochs=300, batch_size=1024)
        if self.run_dir is not None:
            save_viability(self.run_dir / "viability_experience.safetensors", net,
                           {"source": "experience", "samples": len(samples), **metrics})
        self.experience_metrics = metrics
        self.experience_net = net  # picked up by the executor thread

    def install_experience_net(self) -> None:
        net, metrics = self.experience_net, self.experience_metrics
        self.experience_net = None
        if isinstance(self.core.filter, EnsembleFilter):
            self.core.filter.models.append(net)
        for key in ("false_safe_rate", "accuracy"):
            if key in metrics:
                self.gauge(f"viability.{key}", float(metrics[key]))
        self.gauge("viability.fitted", 1.0)
        self.log.info("viability_fitted", **{k: float(v) for k, v in metrics.items()})

    def internal_state(self, obs: Observation) -> tuple[np.ndarray, np.ndarray | None]:
        """The internal state the core certifies: the true one, or under partial observability the worst corner
        of the estimate's confidence box mean +- k * std (k from the estimator's measured calibration), so that
        what passes is safe for every state in the box. An uncalibrated belief is no knowledge: the corner of
        the whole range, where nothing is certified and the backup policy acts."""
        if obs.internal is not None:
            if self.use_estimate:  # the env shows the truth after all (a launch that hides nothing): certify on it
                if not self.counters.get("belief.truth_shown_steps"):
                    self.log.warning("truth_shown", reason="use_estimate is on but the env's observation carries the "
                                     "internal variables; the shield certifies on those, not on the belief")
                self.count("belief.truth_shown_steps")
            return obs.internal, None
        est = self.estimate
        n = obs.obs.shape[0]
        if est is None or est.step != obs.step or est.mean.shape != (n, 3):
            self.count("missing_estimate")
            return self.widened_corner(obs), None
        self.gauge("belief.k", est.k)
        self.gauge("belief.coverage", est.coverage)
        if not est.calibrated:
            self.count("belief.uncalibrated_steps", n)
            self.carried = None
        else:
            self.last_estimate = est
            half = est.k * est.std.astype(np.float64)
            self.carried = (obs.step, est.mean - half, est.mean + half)
        return belief_corner(est.mean, est.std, est.k, est.calibrated), None

    def widened_corner(self, obs: Observation) -> np.ndarray:
        """No estimate for this step (it comes late, or the estimator is down): the certified box of the step
        before carried through this step's observation by the known dynamics (IntervalBelief, as the estimator
        does); after a gap, the newest calibrated box widened on the bad side by the most the dynamics can move
        in the steps since (an arena that started an episode since then: the worst start state so widened).
        Nothing to carry or widen -> NaN, bad input: the core falls back."""
        last, n = self.last_estimate, obs.obs.shape[0]
        if last is None or last.step >= obs.step or last.mean.shape != (n, 3):
            return np.full((n, 3), np.nan)
        carried = self.carried
        if carried is not None and carried[0] == obs.step - 1 and carried[1].shape == (n, 3):
            # the box of the step before, carried through this observation by the known dynamics (as the
            # estimator would have): exact, where widening by the worst drift soon leaves nothing certified
            low, high = self.interval.propagate(carried[1], carried[2], obs.obs)
            fresh = obs.episode_step == 0
            low[fresh], high[fresh] = self.interval.start_low, self.interval.start_high
            self.carried = (obs.step, low, high)
            self.count("belief.carried_steps", n)
            return np.clip(np.where(WORST_DIRECTION < 0, low, high), 0.0, 1.0)
        self.count("belief.widened_steps", n)
        return drifted_corner(last.mean, last.k * last.std.astype(np.float64), obs.step - last.step, self.drift,
                              obs.episode_step, self.start_corner)
