from pathlib import Path

import numpy as np
import pytest

from reachability.compute import compute_kernel
from reachability.distill import DistillConfig, distill_kernel
from reachability.kernel_file import KernelFileError, load_kernel, save_kernel
from reachability.problems import get_problem


@pytest.fixture(scope="module")
def kernel():
    return compute_kernel(get_problem("double_integrator"), (101, 101), accuracy="medium")


def test_kernel_file_round_trip(tmp_path: Path, kernel) -> None:
    path = save_kernel(tmp_path / "k.npz", kernel)
    back = load_kernel(path)
    np.testing.assert_array_equal(back.value, kernel.value)
    assert back.grid.shape == kernel.grid.shape
    np.testing.assert_allclose(back.grid.axes[1], kernel.grid.axes[1])
    assert back.metadata == kernel.metadata
    with np.load(path, allow_pickle=False) as data:
        assert {"value", "axis_0", "axis_1", "metadata"} <= set(data.files)


def test_kernel_file_errors_name_the_field(tmp_path: Path, kernel) -> None:
    np.savez(tmp_path / "no_value.npz", axis_0=np.arange(3.0))
    with pytest.raises(KernelFileError, match="'value'"):
        load_kernel(tmp_path / "no_value.npz")
    np.savez(
        tmp_path / "bad_axis.npz",
        value=kernel.value,
        axis_0=np.arange(5.0),
        axis_1=kernel.grid.axes[1],
        metadata=np.array("{}"),
    )
    with pytest.raises(KernelFileError, match="axis_0"):
        load_kernel(tmp_path / "bad_axis.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(KernelFileError, match="not a kernel"):
        load_kernel(tmp_path / "junk.npz")
    with pytest.raises(KernelFileError, match="not found"):
        load_kernel(tmp_path / "missing.npz")


def test_distilled_network_false_safe_rate_on_held_out_points(kernel) -> None:
    net, report = distill_kernel(kernel, DistillConfig(epochs=600))
    assert report["holdout"]["false_safe_rate"] < 0.005
    assert report["holdout"]["accuracy"] > 0.9
    assert net.state_names == ["x", "v"]
