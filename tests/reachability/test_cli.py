import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def reach(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reachability.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_list_compute_distill_plot(tmp_path: Path) -> None:
    listed = reach("list")
    assert listed.returncode == 0, listed.stderr
    for name in ("double_integrator", "population", "gridlife_energy", "gridlife_internal", "air3d"):
        assert name in listed.stdout
    assert "energy, temperature, integrity" in listed.stdout

    kernel = tmp_path / "kernel.npz"
    done = reach("compute", "population", "--grid", "41,41", "--horizon", "4", "--out", str(kernel))
    assert done.returncode == 0, done.stderr
    assert kernel.is_file()

    net = tmp_path / "viability.safetensors"
    done = reach("distill", str(kernel), "--out", str(net), "--epochs", "200")
    assert done.returncode == 0, done.stderr
    assert "false-safe rate" in done.stdout and "accuracy" in done.stdout
    from nodes.shield.viability import load_viability

    loaded, meta = load_viability(net)
    assert loaded.state_names == ["x", "y"] and meta["source"] == "reachability:population"

    image = tmp_path / "kernel.png"
    done = reach("plot", str(kernel), "--out", str(image))
    assert done.returncode == 0, done.stderr
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("compute", "nonsense", "--out", "k.npz"), "PROBLEM"),
        (("compute", "double_integrator", "--grid", "101,x", "--out", "k.npz"), "--grid"),
        (("compute", "double_integrator", "--grid", "101,101,101", "--out", "k.npz"), "--grid"),
        (("compute", "double_integrator", "--accuracy", "extreme", "--out", "k.npz"), "--accuracy"),
        (("compute", "double_integrator", "--horizon", "-1", "--out", "k.npz"), "--horizon"),
        (("plot", "no_such_file.npz", "--out", "k.png"), "KERNEL"),
    ],
)
def test_bad_arguments_exit_nonzero_with_a_message(tmp_path: Path, args: tuple[str, ...], named: str) -> None:
    done = reach(*(a if not a.endswith((".npz", ".png")) or a.startswith("no_") else str(tmp_path / a) for a in args))
    assert done.returncode != 0
    assert named in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_bad_kernel_file_is_rejected(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"\x00" * 64)
    done = reach("distill", str(bogus), "--out", str(tmp_path / "v.safetensors"))
    assert done.returncode != 0
    assert "KERNEL" in done.stderr and "not a kernel" in done.stderr
    assert "Traceback" not in done.stderr
