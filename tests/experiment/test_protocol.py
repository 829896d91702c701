"""The experiment protocol's phases, selection and peer set-up, driven as an env drives it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nodes.experiment import ArenaFacts, Books, Experiment, Settings
from persist_rt.log import get_logger

SETTINGS = Settings(seed=0, num_envs=4, eval_episodes=3, eval_seed=10, select_policy=True, select_seed=20,
                    select_episodes=5, agent_node="agent", shield_node="shield")
GRIDLIFE = ArenaFacts(episode_cap=100, train_episode_cap=50, has_drive=True, has_tokens=True, has_scripted=True)


class Peers:
    """The agent and shield as the protocol's `call` sees them: kept policies 4 and 8, each call written down."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, node: str, service: str, args: dict[str, Any]) -> Any:
        self.calls.append((node, service, args))
        return {"policy.kept": {"versions": [4, 8]}, "policy.show": {"version": 8},
                "policy.save": {"path": args.get("path"), "version": 8}}.get(service, {})


def run(experiment: Experiment, survival: dict[int, int]) -> list[tuple[str, int, int, int | None]]:
    """Every phase to the end, each selection candidate surviving ``survival[version]`` steps."""
    books: dict[str, Books] = {}
    phases, name = [], "train"
    while (phase := experiment.next_phase(name, books)) is not None:
        phases.append((phase.name, phase.arenas, phase.seed, phase.version))
        books[phase.name] = Books(episodes=1, lengths=[survival.get(phase.version or 0, 1)], died=[True], returns=[0.0])
        name = phase.name
    return phases


def test_phases_run_in_order_on_their_seeds_and_the_selected_policy_is_evaluated(tmp_path: Path) -> None:
    peers = Peers()
    experiment = Experiment(SETTINGS, GRIDLIFE, peers, get_logger("env"), tmp_path)
    phases = run(experiment, {4: 90, 8: 70})
    assert phases == [("select", 5, 20, 4), ("select", 5, 20, 8), ("eval", 3, 10, None),
                      ("baseline_random", 3, 10, None), ("baseline_scripted", 3, 10, None),
                      ("eval_shielded", 3, 10, None)]
    assert experiment.best_selected() == 4  # it survived longest
    used = [args["version"] for _, service, args in peers.calls if service == "policy.use"]
    assert used == [4, 8, 4]  # each candidate, then the chosen one before the evaluations
    modes = [(node, args["value"]) for node, service, args in peers.calls if service == "param.set"]
    assert modes == [("agent", "eval"), ("shield", True), ("agent", "eval"), ("shield", True), ("agent", "random"),
                     ("shield", True), ("agent", "eval"), ("shield", False)]  # the scripted phase sets up nobody
    saves = [i for i, (_, service, _) in enumerate(peers.calls) if service == "policy.save"]
    assert len(saves) == 1 and peers.calls[saves[0]][2]["path"] == str((tmp_path / "policy.safetensors").resolve())
    assert saves[0] > max(i for i, (_, service, _) in enumerate(peers.calls) if service == "policy.use")


def test_a_kind_without_scripted_controller_or_kept_policies_skips_those_phases(tmp_path: Path) -> None:
    facts = ArenaFacts(episode_cap=200, train_episode_cap=200, has_drive=False, has_tokens=False, has_scripted=False)
    settings = Settings(**{**SETTINGS.__dict__, "select_policy": False})
    phases = run(Experiment(settings, facts, Peers(), get_logger("env"), tmp_path), {})
    assert [p[0] for p in phases] == ["eval", "baseline_random", "eval_shielded"]
    no_eval = Settings(**{**SETTINGS.__dict__, "eval_episodes": 0})
    assert Experiment(no_eval, facts, Peers(), get_logger("env"), tmp_path).next_phase("train", {}) is None
