"""kernel.npz: `value`, `axis_0 .. axis_{n-1}` and metadata as plain arrays and strings (no pickles)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from reachability.compute import KernelResult
from reachability.grid import Grid


class KernelFileError(ValueError):
    """A kernel file that cannot be used; the message names the field and the reason."""


def save_kernel(path: str | Path, result: KernelResult) -> Path:
    target = Path(path)
    arrays: dict[str, np.ndarray] = {"value": np.asarray(result.value, dtype=np.float64)}
    for i, axis in enumerate(result.grid.axes):
        arrays[f"axis_{i}"] = np.asarray(axis, dtype=np.float64)
    arrays["metadata"] = np.array(json.dumps(result.metadata, sort_keys=True))
    # write through an open handle: np.savez would otherwise append '.npz' to other suffixes
    tmp = target.with_name(f".{target.name}.tmp")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.replace(target)
    return target


def load_kernel(path: str | Path) -> KernelResult:
    source = Path(path)
    if source.is_file() and not zipfile.is_zipfile(source):
        raise KernelFileError(f"{source}: not a kernel .npz file (not a zip archive)")
    try:
        with np.load(source, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise KernelFileError(f"{source}: file not found") from None
    except (OSError, ValueError, EOFError) as exc:
        raise KernelFileError(f"{source}: not a kernel .npz file ({exc})") from None
    if "value" not in arrays:
        raise KernelFileError(f"{source}: array 'value' is missing")
    if "metadata" not in arrays:
        raise KernelFileError(f"{source}: array 'metadata' is missing")
    try:
        metadata: dict[str, Any] = json.loads(str(arrays["metadata"]))
    except json.JSONDecodeError as exc:
        raise KernelFileError(f"{source}: field 'metadata' is not JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise KernelFileError(f"{source}: field 'metadata' must be a JSON object")
    value = np.asarray(arrays["value"], dtype=float)
    axes = []
    for i in range(value.ndim):
        axis = arrays.get(f"axis_{i}")
        if axis is None:
            raise KernelFileError(f"{source}: array 'axis_{i}' is missing")
        if axis.ndim != 1 or axis.shape[0] != value.shape[i]:
            raise KernelFileError(f"{source}: array 'axis_{i}' has shape {axis.shape}, expected ({value.shape[i]},)")
        if not (np.isfinite(axis).all() and np.all(np.diff(axis) > 0)):
            raise KernelFileError(f"{source}: array 'axis_{i}' must be finite and strictly increasing")
        axes.append(axis)
    if not np.isfinite(value).all():
        raise KernelFileError(f"{source}: array 'value' holds non-finite values")
    for key in ("problem", "state_names", "horizon", "scheme"):
        if key not in metadata:
            raise KernelFileError(f"{source}: field 'metadata.{key}' is missing")
    names = metadata["state_names"]
    if not isinstance(names, list) or len(names) != value.ndim:
        raise KernelFileError(f"{source}: field 'metadata.state_names' must list {value.ndim} names")
    periodic = metadata.get("periodic", [False] * value.ndim)
    hi = [float(a[-1]) if not p else float(a[-1] + (a[1] - a[0])) for a, p in zip(axes, periodic, strict=True)]
    try:
        grid = Grid.from_box([float(a[0]) for a in axes], hi, value.shape, periodic)
    except ValueError as exc:
        raise KernelFileError(f"{source}: {exc}") from None
    return KernelResult(grid, value, metadata)
