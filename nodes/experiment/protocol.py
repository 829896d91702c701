"""The experiment protocol of a run with a training budget: train -> select -> eval -> baselines -> shielded eval.

The env node drives it: it steps the arenas, applies its fallback and keeps the books of each phase;
when a phase is over it asks ``Experiment.next_phase`` what comes next, and at the end (or when stopped)
``Experiment.write_summary`` writes ``summary.json``, the learning curve and the console report. The
protocol sets up each phase's peers through their services (the agent's mode and kept policies, the
shield's bypass) with the ``call`` it is given, and never touches the arenas itself: any env kind that
can build ``n`` arenas from a seed and keep ``Books`` can run it (``ArenaFacts`` is what it says about
itself).

Phases (one episode per arena, all on fixed seeds): ``select`` runs each policy the agent kept
(``select_policy``) on the selection seed, unshielded and deterministic, and the evaluations then use
the one that survived longest; ``eval`` (the policy), ``baseline_random`` (uniform actions) and, where
the kind has a scripted controller, ``baseline_scripted`` (stepped by the env alone) run unshielded on
the evaluation seed; ``eval_shielded`` runs the policy with the shield on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodes.experiment.books import Books, episode_section, mean, rate, return_figures, survival
from nodes.experiment.curve import curve_panels, plot_panels
from nodes.experiment.report import report_lines
from persist_rt.checkpoint import atomic_write_bytes

EVAL_PHASES = ("select", "eval", "baseline_random", "baseline_scripted", "eval_shielded")
# the shield forwards proposals: what the agent alone does
UNSHIELDED_PHASES = ("select", "eval", "baseline_random", "baseline_scripted")
SCRIPTED_PHASES = ("baseline_scripted",)  # the env steps itself with its scripted controller: no agent, no shield
AGENT_MODES = {"select": "eval", "eval": "eval", "baseline_random": "random", "eval_shielded": "eval"}

Call = Callable[[str, str, dict[str, Any]], Any]  # (node, service, args) -> result, None on failure


@dataclass(frozen=True)
class Settings:
    """The run's protocol, as the env's parameters set it."""

    seed: int
    num_envs: int
    eval_episodes: int
    eval_seed: int
    select_policy: bool
    select_seed: int
    select_episodes: int
    agent_node: str
    shield_node: str
    learner_node: str = ""  # its learner.summary (config, train figures) joins summary.json
    bypass_nodes: tuple[str, ...] = ()  # bypassed with the shield in unshielded phases (the multi-agent coupler)


@dataclass(frozen=True)
class ArenaFacts:
    """What an env kind says about its arenas."""

    episode_cap: int
    train_episode_cap: int
    has_drive: bool  # episodes end with a homeostatic drive worth reporting
    has_tokens: bool  # steps count collected tokens
    has_scripted: bool  # a scripted controller for ``baseline_scripted``


@dataclass(frozen=True)
class Phase:
    """An evaluation phase to run: ``arenas`` episodes from ``seed``; in the selection, of kept policy ``version``."""

    name: str
    arenas: int
    seed: int
    version: int | None = None


@dataclass
class Training:
    """The training books the learning curve is drawn from."""

    books: Books
    # per ended training episode: (env_steps, length, return, task return, homeostatic return)
    episodes: list[tuple[int, int, float, float, float]]
    version_steps: dict[int, int]  # policy version -> training env steps when it first acted


class Experiment:
    def __init__(self, settings: Settings, facts: ArenaFacts, call: Call, log: Any, run_dir: Path | None) -> None:
        self.settings = settings
        self.facts = facts
        self.call = call
        self.log = log
        self.run_dir = run_dir
        self.selection: list[dict[str, Any]] = []  # per kept policy run to its end: version and figures
        self.candidates: list[int] = []  # kept policy versions still to run in the selection
        self.candidate: int | None = None  # the version the selection is running now

    # --- phases -----------------------------------------------------------------------------

    def next_phase(self, phase: str, books: dict[str, Books]) -> Phase | None:
        """The phase after ``phase`` (which is over), its peers set up; None when the run is finished."""
        s = self.settings
        if phase == "select":
            figures = self.section(books["select"], survival_rate=survival(books["select"]))
            self.selection.append({"version": self.candidate, **figures})
            if self.candidates:  # the next kept policy runs the same episodes
                return self.select(self.candidates.pop(0))
            best = self.best_selected()
            if best is not None:
                self.use_policy(best)
        order = ["train", *EVAL_PHASES] if s.eval_episodes else ["train"]
        nxt = order.index(phase) + 1
        if nxt < len(order) and order[nxt] == "select":
            self.candidates = self.kept_versions() if s.select_policy else []
            if not self.candidates:
                nxt += 1
        if nxt < len(order) and order[nxt] in SCRIPTED_PHASES and not self.facts.has_scripted:
            nxt += 1
        if nxt >= len(order):
            return None
        self.configure_peers_for(order[nxt])
        if order[nxt] == "eval":
            self.save_selected_policy()
        if order[nxt] == "select":
            return self.select(self.candidates.pop(0))
        self.candidate = None
        return Phase(order[nxt], s.eval_episodes, s.eval_seed)

    def select(self, version: int) -> Phase:
        self.candidate = version
        self.use_policy(version)
        return Phase("select", self.settings.select_episodes, self.settings.select_seed, version)

    def best_selected(self) -> int | None:
        """The kept policy that survived longest in the selection; ties go to the fewer viability violations (a
        policy can outlive every episode and still enter hazards), then the higher return, then the newest."""
        if not self.selection:
            return None
        best = max(reversed(self.selection),
                   key=lambda c: (c["mean_survival_steps"], -c["violations"], c["mean_return"]))
        return int(best["version"])

    # --- peers ------------------------------------------------------------------------------

    def configure_peers_for(self, phase: str) -> None:
        if phase in SCRIPTED_PHASES:
            return  # the agent and the shield sit this one out
        self.set_remote(self.settings.agent_node, "mode", AGENT_MODES[phase])
        for node in (self.settings.shield_node, *self.settings.bypass_nodes):
            self.set_remote(node, "bypass", phase in UNSHIELDED_PHASES)

    def save_selected_policy(self) -> None:
        """The policy the evaluations use, as ``policy.safetensors`` in the run directory: a file to take away."""
        agent = self.settings.agent_node
        if self.run_dir is None or not agent:
            return
        shown = self.call(agent, "policy.show", {})
        if not shown or shown.get("version") is None:
            self.log.info("no_policy_to_save", reason="the agent acts uniformly at random (no weights arrived)")
            return
        saved = self.call(agent, "policy.save", {"path": str((self.run_dir / "policy.safetensors").resolve())})
        if saved:
            self.log.info("policy_saved", **saved)

    def kept_versions(self) -> list[int]:
        result = self.call(self.settings.agent_node, "policy.kept", {})
        return [int(v) for v in result["versions"]] if result else []

    def use_policy(self, version: int) -> None:
        self.call(self.settings.agent_node, "policy.use", {"version": version})

    def set_remote(self, node: str, name: str, value: Any) -> None:
        self.call(node, "param.set", {"name": name, "value": value})

    # --- summary ----------------------------------------------------------------------------

    def section(self, books: Books, **extra: float) -> dict[str, Any]:
        return episode_section(books, self.facts.has_tokens, **extra)

    def write_summary(self, books: dict[str, Books], training: Training, wall_s: float, complete: bool,
                      extra: dict[str, Any]) -> None:
        """``summary.json`` (merged into what the launcher wrote), the learning curve and the console report."""
        if self.run_dir is None:
            return
        s, facts = self.settings, self.facts
        train = training.books
        summary = {
            "run_id": self.run_dir.name,
            "seed": s.seed,
            "wall_s": round(wall_s, 3),
            "env_steps": train.env_steps,
            "episodes": train.episodes,
            "episode_cap": facts.episode_cap,
            "env_steps_per_s": round(train.env_steps / max(1e-9, wall_s), 1),
            **{key: value for key, value in extra.items() if key != "train"},
            "train": {
                "violations_executed": train.violations_executed,
                "shield_interventions": train.shield_interventions,
                "fallback_steps": train.fallback_steps,
                "executed_steps": train.executed_steps,
                "mean_survival_steps": mean(train.lengths),
                **return_figures(train, facts.has_tokens),
                "intervention_rate_first_10pct": rate(train.interventions_per_step, s.num_envs, first=True),
                "intervention_rate_last_10pct": rate(train.interventions_per_step, s.num_envs, first=False),
            },
            "complete": complete,
        }
        summary["train"].update(extra.get("train", {}))  # the kind's own training figures
        learner = self.call(s.learner_node, "learner.summary", {}) if s.learner_node else None
        if learner:
            summary["config"] = learner["config"]
            summary["train"].update(learner["train"])
        if self.selection:
            summary["select"] = {"seed": s.select_seed, "chosen_version": self.best_selected(),
                                 "candidates": self.selection}
        if "eval" in books:
            e = books["eval"]
            drive = {"mean_drive": mean(e.drives)} if facts.has_drive else {}
            summary["eval"] = self.section(e, survival_rate=survival(e), **drive)
        for baseline in ("baseline_random", "baseline_scripted"):
            if baseline in books:
                summary[baseline] = self.section(books[baseline], survival_rate=survival(books[baseline]))
        if "eval_shielded" in books:
            sh = books["eval_shielded"]
            summary["eval_shielded"] = self.section(
                sh, interventions_per_step=round(sh.shield_interventions / max(1, sh.env_steps), 5))
        path = self.run_dir / "summary.json"
        existing: dict[str, Any] = {}
        if path.exists():
            try:
                existing = json.loads(path.read_text())
            except json.JSONDecodeError:
                existing = {}
        existing.update(summary)
        atomic_write_bytes(path, (json.dumps(existing, indent=2) + "\n").encode())
        self.plot_curve(training, summary)
        self.log.info("report", text="\n" + "\n".join(report_lines(summary)))

    def plot_curve(self, training: Training, summary: dict[str, Any]) -> None:
        """The learning curve's panels as data (``learning_curve.json``) and as a figure (``learning_curve.png``)."""
        if not training.episodes or self.run_dir is None:
            return
        panels = curve_panels(training.episodes, training.books.interventions_per_step, self.settings.num_envs,
                              self.facts.train_episode_cap, self.selection, training.version_steps, summary,
                              self.best_selected())
        atomic_write_bytes(self.run_dir / "learning_curve.json", (json.dumps(panels) + "\n").encode())
        plot_panels(panels, self.run_dir / "learning_curve.png")
