from pathlib import Path

import numpy as np
import pytest

from nodes.shield.viability import (
    ViabilityNet,
    classification_metrics,
    fit_viability,
    load_viability,
    save_viability,
)
from persist_rt import checkpoint
from persist_rt.checkpoint import CheckpointError


def disc_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).uniform(-1, 1, (n, 2)).astype(np.float32)
    return x, (0.6 - np.linalg.norm(x, axis=1)).astype(np.float32)


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="lo/hi"):
        ViabilityNet(["a", "b"], [0.0], [1.0])
    with pytest.raises(ValueError, match="lo/hi"):
        ViabilityNet(["a"], [1.0], [0.0])
    with pytest.raises(ValueError, match="state_names"):
        ViabilityNet(["a", "a"], [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="hidden"):
        ViabilityNet(["a"], [0.0], [1.0], hidden=(0,))


def test_fit_is_conservative_on_held_out_points() -> None:
    x, m = disc_data(6000, 0)
    net = ViabilityNet(["a", "b"], [-1, -1], [1, 1])
    report = fit_viability(net, x[:5000], m[:5000], boundary_weight=10.0, epochs=600, lr=3e-3, seed=0)
    assert report["false_safe_rate"] == 0.0
    held = classification_metrics(net.margin(x[5000:]), m[5000:])
    assert held["false_safe_rate"] < 0.01
    assert held["accuracy"] > 0.9


def test_fit_rejects_bad_data() -> None:
    net = ViabilityNet(["a", "b"], [-1, -1], [1, 1])
    x, m = disc_data(10, 0)
    with pytest.raises(ValueError, match="margins"):
        fit_viability(net, x, m[:5], boundary_weight=1.0, epochs=1, lr=1e-3, seed=0)
    with pytest.raises(ValueError, match="states"):
        fit_viability(net, x[:, :1], m, boundary_weight=1.0, epochs=1, lr=1e-3, seed=0)
    m[0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        fit_viability(net, x, m, boundary_weight=1.0, epochs=1, lr=1e-3, seed=0)


def test_save_load_round_trip(tmp_path: Path) -> None:
    x, m = disc_data(500, 1)
    net = ViabilityNet(["a", "b"], [-1, -1], [1, 1], hidden=(16,))
    fit_viability(net, x, m, boundary_weight=5.0, epochs=50, lr=3e-3, seed=1)
    path = save_viability(tmp_path / "v.safetensors", net, {"source": "test"})
    loaded, meta = load_viability(path)
    np.testing.assert_array_equal(loaded.margin(x), net.margin(x))
    assert meta["state_names"] == ["a", "b"] and meta["hidden"] == [16] and meta["source"] == "test"


def test_load_names_the_bad_tensor_or_field(tmp_path: Path) -> None:
    net = ViabilityNet(["a", "b"], [-1, -1], [1, 1], hidden=(16,))
    path = save_viability(tmp_path / "v.safetensors", net, {"source": "test"})
    tensors, meta = checkpoint.load(path)

    tensors_bad = dict(tensors, **{"mlp.0.weight": np.zeros((8, 2), np.float32)})
    checkpoint.save(tmp_path / "shape.safetensors", tensors_bad, meta)
    with pytest.raises(CheckpointError, match=r"mlp\.0\.weight"):
        load_viability(tmp_path / "shape.safetensors")

    tensors_dtype = dict(tensors, **{"mlp.0.bias": tensors["mlp.0.bias"].astype(np.float64)})
    checkpoint.save(tmp_path / "dtype.safetensors", tensors_dtype, meta)
    with pytest.raises(CheckpointError, match=r"mlp\.0\.bias"):
        load_viability(tmp_path / "dtype.safetensors")

    checkpoint.save(tmp_path / "field.safetensors", tensors, {**meta, "hidden": "big"})
    with pytest.raises(CheckpointError, match="'hidden'"):
        load_viability(tmp_path / "field.safetensors")

    checkpoint.save(tmp_path / "names.safetensors", tensors, {**meta, "state_names": ["a"]})
    with pytest.raises(CheckpointError, match="'lo'"):
        load_viability(tmp_path / "names.safetensors")
