"""Slices of a kernel: V >= 0 shaded, the computed boundary V = 0, and the analytic boundary when known."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reachability.compute import KernelResult
from reachability.problems import PROBLEMS


def plot_kernel(kernel: KernelResult, out: str | Path, slices: int = 3) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid, value, meta = kernel.grid, kernel.value, kernel.metadata
    names = meta["state_names"]
    problem = PROBLEMS.get(meta["problem"])
    horizon = float(meta["horizon"])
    # 2-D problems: one panel; higher dimensions: slices through the middle of the trailing axes
    if grid.ndim == 2:
        picks: list[tuple[int, ...]] = [()]
    else:
        last = grid.shape[2]
        picks = [(int(k),) for k in np.linspace(0, last - 1, slices).round()]
    fig, axes = plt.subplots(1, len(picks), figsize=(5 * len(picks), 4.5), squeeze=False)
    for ax, pick in zip(axes[0], picks, strict=True):
        index = (slice(None), slice(None), *pick, *([grid.shape[k] // 2 for k in range(3, grid.ndim)]))
        xs, ys = np.meshgrid(grid.axes[0], grid.axes[1], indexing="ij")
        v = value[index]
        ax.contourf(xs, ys, v >= 0, levels=[0.5, 1.5], colors=["#9fd8a4"])
        ax.contour(xs, ys, v, levels=[0.0], colors="k", linewidths=1.5)
        if problem is not None:
            states = grid.states[index]
            if problem.analytic_value is not None:  # smooth curve where the value itself is known
                known = problem.analytic_value(states, horizon)
                ax.contour(xs, ys, known, levels=[0.0], colors="r", linestyles="--", linewidths=1.2)
            elif problem.analytic_kernel is not None:
                mask = problem.analytic_kernel(states, horizon).astype(float)
                ax.contour(xs, ys, mask, levels=[0.5], colors="r", linestyles="--", linewidths=1.2)
        title = meta["problem"]
        if pick:
            title += f", {names[2]} = {grid.axes[2][pick[0]]:.3g}"
        ax.set_title(title)
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
    fig.suptitle("kernel {V >= 0} (green), computed boundary (black), analytic boundary (red, dashed)", fontsize=9)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
