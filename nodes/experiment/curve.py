"""The run's learning curve: what changed over training, and where the kept policies stand against the baselines.

``curve_panels`` turns the run's books into panels of plain data (written next to the plot as
``learning_curve.json``, so the figure can be checked and drawn again); ``plot_panels`` draws them.
Training episodes are capped and shielded, so their length says little: the panels show the shield's
intervention rate, the task and homeostatic returns per training episode, and the unshielded evaluations
of the kept policies (survival, tokens per 1000 steps) against the env steps at which each first acted,
with the random and scripted baselines as horizontal references.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

Panel = dict[str, Any]  # title, ylabel, series: [{label, style (points | line | trace | marker | hline), x, y}]
REFERENCE_COLOURS = {"random": "tab:red", "scripted": "tab:green"}  # horizontal references; others grey
POINTS_PER_CURVE = 40  # bins of the intervention rate and width of the returns' moving average


def curve_panels(
    episodes: list[tuple[int, int, float, float, float]],
    interventions_per_step: list[int],
    num_envs: int,
    train_cap: int,
    kept: list[dict[str, Any]],
    version_steps: dict[int, int],
    evaluations: dict[str, dict[str, Any]],
    chosen: int | None,
) -> dict[str, Panel]:
    """Panels from the training episodes ``(env_steps, length, return, task return, homeo return)``, the
    interventions of each training step, the selection's kept policies, the env step at which each policy
    version first acted, and the unshielded evaluations (``eval``, ``baseline_random``, ``baseline_scripted``)."""
    ep = np.asarray(episodes, np.float64).reshape(-1, 5)
    panels = {
        "intervention_rate": _panel("shield interventions (training)", "interventions per arena-step",
                                    [_line("per step, binned", *_binned_rate(interventions_per_step, num_envs))]),
        "task_return": _panel("task return per training episode", "task return", _scatter(ep[:, 0], ep[:, 3])),
        "homeo_return": _panel("homeostatic return per training episode", "homeostatic return",
                               _scatter(ep[:, 0], ep[:, 4])),
        "train_survival": _panel("training episode length (capped, shielded)", "steps",
                                 [*_scatter(ep[:, 0], ep[:, 1]),
                                  *([_hline("training cap", train_cap)] if train_cap else [])]),
    }
    last_step = int(ep[-1, 0]) if len(ep) else 0
    for key, title, label in (("mean_survival_steps", "survival, unshielded", "mean steps survived"),
                              ("tokens_per_1000_steps", "tokens, unshielded", "tokens per 1000 steps")):
        series = []
        if kept:
            at = [version_steps.get(int(c["version"]), last_step) for c in kept]
            series.append({"label": "kept policies (selection seeds)", "style": "trace", "x": at,
                           "y": [c.get(key, 0.0) for c in kept]})
        if "eval" in evaluations and key in evaluations["eval"]:
            at = version_steps.get(chosen, last_step) if chosen is not None else last_step
            series.append({"label": "evaluated policy (eval seeds)", "style": "marker", "x": [at],
                           "y": [evaluations["eval"][key]]})
        for baseline in ("baseline_random", "baseline_scripted"):
            if key in evaluations.get(baseline, {}):
                series.append(_hline(baseline.removeprefix("baseline_"), evaluations[baseline][key]))
        panels[f"eval_{key}"] = _panel(title, label, series)
    return panels


def plot_panels(panels: dict[str, Panel], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    styles = {"points": {"ls": "", "marker": ".", "alpha": 0.3}, "line": {}, "trace": {"marker": "o"},
              "marker": {"ls": "", "marker": "*", "ms": 12}}
    for ax, panel in zip(axes.flat, panels.values(), strict=False):
        for s in panel["series"]:
            if s["style"] == "hline":
                ax.axhline(s["y"][0], ls="--", c=REFERENCE_COLOURS.get(s["label"], "grey"), label=s["label"])
            else:
                ax.plot(s["x"], s["y"], label=s["label"], **styles[s["style"]])
                if s["style"] == "points" and len(s["y"]) >= 2 * POINTS_PER_CURVE:
                    ax.plot(*_moving_average(s["x"], s["y"]), label=f"{s['label']}, moving average")
        if not panel["series"]:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set(title=panel["title"], xlabel="env steps", ylabel=panel["ylabel"])
        if len(panel["series"]) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    # fixed margins: tight_layout would draw the whole figure once more just to measure it
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.09, top=0.94, wspace=0.28, hspace=0.4)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _panel(title: str, ylabel: str, series: list[dict[str, Any]]) -> Panel:
    return {"title": title, "ylabel": ylabel, "series": [s for s in series if len(s["y"])]}


def _scatter(x: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    return [{"label": "episodes", "style": "points", "x": x.astype(int).tolist(), "y": np.round(y, 4).tolist()}]


def _line(label: str, x: list[int], y: list[float]) -> dict[str, Any]:
    return {"label": label, "style": "line", "x": x, "y": y}


def _hline(label: str, y: float) -> dict[str, Any]:
    return {"label": label, "style": "hline", "x": [], "y": [float(y)]}


def _binned_rate(per_step: list[int], num_envs: int) -> tuple[list[int], list[float]]:
    """Interventions per arena-step over consecutive bins of training steps, at each bin's last env step."""
    counts = np.asarray(per_step, np.float64)
    if not len(counts):
        return [], []
    edges = np.unique(np.linspace(0, len(counts), POINTS_PER_CURVE + 1).astype(int))
    x = [int(e) * num_envs for e in edges[1:]]
    y = [round(float(counts[a:b].sum()) / ((b - a) * num_envs), 5) for a, b in itertools.pairwise(edges)]
    return x, y


def _moving_average(x: list[float], y: list[float]) -> tuple[np.ndarray, np.ndarray]:
    window = max(1, len(y) // POINTS_PER_CURVE)
    smooth = np.convolve(np.asarray(y, np.float64), np.ones(window) / window, mode="valid")
    return np.asarray(x)[window - 1:], smooth
