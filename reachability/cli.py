"""`persist reach`: list problems, compute kernels, distil them into the shield's network, plot them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Viability kernels by Hamilton-Jacobi reachability.", no_args_is_help=True)


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def parse_grid(text: str | None, ndim: int) -> tuple[int, ...] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        fail(f"--grid: '{text}' is not a comma-separated list of integers")
    if len(sizes) != ndim:
        fail(f"--grid: the problem has {ndim} state variables, got {len(sizes)} sizes in '{text}'")
    if any(n < 5 for n in sizes):
        fail(f"--grid: every size must be at least 5, got '{text}'")
    return sizes


@app.command("list")
def list_problems() -> None:
    """Show the shipped problems with their state variables."""
    from rich.console import Console
    from rich.table import Table

    from reachability.problems import PROBLEMS

    table = Table("problem", "state variables", "default grid", "scheme", "known answer", "description")
    for p in PROBLEMS.values():
        known = "yes" if (p.analytic_value or p.analytic_kernel) else "no"
        grid = "x".join(map(str, p.default_grid))
        table.add_row(p.name, ", ".join(p.state_names), grid, p.scheme, known, p.description)
    Console(width=200).print(table)


@app.command()
def compute(
    problem: Annotated[str, typer.Argument(help="problem name (see `list`)")],
    out: Annotated[Path, typer.Option("--out", help="kernel .npz to write")],
    grid: Annotated[str | None, typer.Option("--grid", help="points per axis, e.g. 101,101")] = None,
    horizon: Annotated[float | None, typer.Option("--horizon", help="time horizon T (seconds)")] = None,
    accuracy: Annotated[str, typer.Option("--accuracy", help="low, medium or high")] = "high",
    scheme: Annotated[str | None, typer.Option("--scheme", help="pde or semi_lagrangian")] = None,
) -> None:
    """Compute the value function and kernel {V >= 0} of PROBLEM on a grid."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from reachability.accuracy import ACCURACY
    from reachability.compute import compute_kernel
    from reachability.kernel_file import save_kernel
    from reachability.problems import PROBLEMS

    if problem not in PROBLEMS:
        fail(f"PROBLEM: unknown problem '{problem}', choose from {', '.join(PROBLEMS)}")
    spec = PROBLEMS[problem]
    shape = parse_grid(grid, spec.ndim)
    if accuracy not in ACCURACY:
        fail(f"--accuracy: must be one of {', '.join(ACCURACY)}, got '{accuracy}'")
    if horizon is not None and not (horizon > 0 and horizon < float("inf")):
        fail(f"--horizon: must be a positive number, got {horizon}")
    if scheme is not None and scheme not in ("pde", "semi_lagrangian"):
        fail(f"--scheme: must be 'pde' or 'semi_lagrangian', got '{scheme}'")
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task(f"{problem}", total=1.0)
        result = compute_kernel(spec, shape, horizon, accuracy, scheme, lambda f: bar.update(task, completed=f))
    path = save_kernel(out, result)
    share = float((result.value >= 0).mean())
    typer.echo(f"wrote {path}: grid {result.metadata['grid']}, {result.metadata['scheme']}, kernel {share:.1%}")


@app.command()
def distill(
    kernel: Annotated[Path, typer.Argument(help="kernel .npz from `compute`")],
    out: Annotated[Path, typer.Option("--out", help="viability network .safetensors to write")],
    epochs: Annotated[int, typer.Option("--epochs", help="optimiser steps")] = 2000,
    hidden: Annotated[str, typer.Option("--hidden", help="hidden layer widths, e.g. 64,64")] = "64,64",
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Train the shield's viability network on a kernel; report accuracy and the false-safe rate."""
    from reachability.distill import DistillConfig, distill_kernel
    from reachability.kernel_file import KernelFileError, load_kernel

    try:
        widths = tuple(int(h) for h in hidden.split(","))
    except ValueError:
        fail(f"--hidden: '{hidden}' is not a comma-separated list of integers")
    if not widths or any(w <= 0 for w in widths):
        fail(f"--hidden: widths must be positive, got '{hidden}'")
    if epochs <= 0:
        fail(f"--epochs: must be > 0, got {epochs}")
    try:
        result = load_kernel(kernel)
    except KernelFileError as exc:
        fail(f"KERNEL: {exc}")
    from nodes.shield.viability import save_viability

    net, report = distill_kernel(result, DistillConfig(hidden=widths, epochs=epochs, seed=seed))
    held = report["holdout"]
    meta = {
        "source": f"reachability:{result.metadata['problem']}",
        "kernel_metadata": result.metadata,
        "holdout_accuracy": held["accuracy"],
        "holdout_false_safe_rate": held["false_safe_rate"],
        "offset": report["train"]["offset"],
    }
    save_viability(out, net, meta)
    typer.echo(f"wrote {out}")
    typer.echo(f"held-out accuracy:        {held['accuracy']:.4f} ({report['holdout_points']} grid points)")
    typer.echo(f"held-out false-safe rate: {held['false_safe_rate']:.4%}  (unviable points predicted viable)")
    typer.echo(f"held-out false-unsafe:    {held['false_unsafe_rate']:.4%}")


@app.command()
def plot(
    kernel: Annotated[Path, typer.Argument(help="kernel .npz from `compute`")],
    out: Annotated[Path, typer.Option("--out", help="image to write (.png)")],
) -> None:
    """Draw slices of the kernel with its boundary and the analytic boundary where known."""
    from reachability.kernel_file import KernelFileError, load_kernel
    from reachability.plot import plot_kernel

    try:
        result = load_kernel(kernel)
    except KernelFileError as exc:
        fail(f"KERNEL: {exc}")
    typer.echo(f"wrote {plot_kernel(result, out)}")


if __name__ == "__main__":
    app()
