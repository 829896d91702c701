"""The shield's learned parts, learning inside a running graph: amortised filter, OOD detector, ensemble."""

from __future__ import annotations

from pathlib import Path

from nodes.shield.viability import load_viability
from nodes.telemetry.history import load_history
from tests.graph.conftest import LiveRun, launch_single_agent
from tests.launch.conftest import persist


def assert_safe_books(run: LiveRun, steps: int) -> None:
    summary = run.summary()
    train = summary["train"]
    assert summary["env_steps"] == steps
    assert train["executed_steps"] + train["fallback_steps"] == steps
    assert train["violations_executed"] == 0  # every executed action is certified by the gatekeeper


def test_amortised_filter_learned_model_and_ood_detector_are_trained_online(tmp_path: Path,
                                                                       launched: list[LiveRun]) -> None:
    steps = 1600
    run = launch_single_agent(tmp_path, "--arg", f"steps={steps}", "--arg", "filter=amortised",
                              "--set", "shield.amortise_after=400", "--set", "shield.amortise_train_steps=4",
                              "--set", "shield.ood_fit_after=600", "--set", "shield.internal_model=learned")
    launched.append(run)
    assert run.wait_exit() == 0
    assert_safe_books(run, steps)
    history = load_history(run.run_dir / "metrics.jsonl")
    assert history[("shield", "amortised.enabled")].v[-1] == 1.0
    assert history[("shield", "amortised.net_used")].v[-1] > 0
    assert history[("shield", "ood.fitted")].v[-1] == 1.0
    assert history[("shield", "internal_model.ready")].v[-1] == 1.0
    assert any(e["event"] == "ood_fitted" for e in run.log_events("shield"))


def test_ensemble_votes_with_networks_from_an_hj_kernel_and_from_experience(tmp_path: Path,
                                                                   launched: list[LiveRun]) -> None:
    kernel, net = tmp_path / "internal.npz", tmp_path / "internal.safetensors"
    for args in (("compute", "gridlife_internal", "--grid", "15,15,15", "--out", str(kernel)),
                 ("distill", str(kernel), "--out", str(net), "--epochs", "500")):
        out = persist("reach", *args, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
    steps = 800
    run = launch_single_agent(tmp_path, "--arg", f"steps={steps}", "--arg", "filter=ensemble",
                              "--set", f"shield.viability_files=[\"{net}\"]", "--set", "shield.vote=majority",
                              "--set", "shield.viability_learn_after=400")
    launched.append(run)
    assert run.wait_exit() == 0
    assert_safe_books(run, steps)
    assert run.summary()["train"]["shield_interventions"] > 0
    # the network fitted from experience (labelled by exact rollouts) joined the vote
    learned, meta = load_viability(run.run_dir / "viability_experience.safetensors")
    assert learned.state_names == ["pos_x", "pos_y", "energy", "temperature", "integrity"]
    assert meta["false_safe_rate"] <= 0.01
    assert load_history(run.run_dir / "metrics.jsonl")[("shield", "viability.fitted")].v[-1] == 1.0
