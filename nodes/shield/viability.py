"""The shield's viability network: state vector -> viability margin (>= 0 means viable).

One home for the network, its training and its file format. The network is filled either offline
from a Hamilton-Jacobi viability kernel (``reachability``) or online from experience; both paths call
``fit_viability`` and ``save_viability``. Files are safetensors + JSON metadata (persist_rt.checkpoint).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from persist_rt import checkpoint
from persist_rt.checkpoint import CheckpointError

FORMAT = "persist.viability/1"


class ViabilityNet(nn.Module):
    """MLP margin model. Inputs are mapped from the box [lo, hi] to [-1, 1]; the output is
    ``margin_scale * mlp(z) - offset``, where ``offset`` is a conservative shift calibrated after fitting
    so that the training set has (almost) no false-safe predictions."""

    def __init__(
        self,
        state_names: Sequence[str],
        lo: Sequence[float] | np.ndarray,
        hi: Sequence[float] | np.ndarray,
        hidden: Sequence[int] = (64, 64),
    ) -> None:
        super().__init__()
        names = [str(n) for n in state_names]
        lo_t = torch.as_tensor(np.asarray(lo, dtype=np.float32).reshape(-1))
        hi_t = torch.as_tensor(np.asarray(hi, dtype=np.float32).reshape(-1))
        if not names:
            raise ValueError("state_names: must name at least one state variable")
        if len(set(names)) != len(names):
            raise ValueError(f"state_names: names must be unique, got {names}")
        if lo_t.numel() != len(names) or hi_t.numel() != len(names):
            raise ValueError(f"lo/hi: need {len(names)} bounds each, got {lo_t.numel()} and {hi_t.numel()}")
        if not bool(torch.isfinite(lo_t).all() and torch.isfinite(hi_t).all()):
            raise ValueError("lo/hi: bounds must be finite")
        if not bool((hi_t > lo_t).all()):
            raise ValueError(f"lo/hi: need hi > lo per dimension, got {lo_t.tolist()}, {hi_t.tolist()}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or any(h <= 0 for h in hidden):
            raise ValueError(f"hidden: need one or more positive layer widths, got {hidden}")
        self.state_names = names
        self.hidden = hidden
        self.register_buffer("lo", lo_t)
        self.register_buffer("hi", hi_t)
        self.register_buffer("margin_scale", torch.ones(1))
        self.register_buffer("offset", torch.zeros(1))
        layers: list[nn.Module] = []
        width = len(names)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    def raw(self, states: torch.Tensor) -> torch.Tensor:
        """Margin before the conservative offset."""
        z = 2.0 * (states - self.lo) / (self.hi - self.lo) - 1.0
        return self.margin_scale * self.mlp(z).squeeze(-1)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.raw(states) - self.offset

    @torch.no_grad()
    def margin(self, states: np.ndarray) -> np.ndarray:
        """numpy convenience for callers outside training: (..., state_dim) -> (...)."""
        x = np.asarray(states, dtype=np.float32)
        if x.shape[-1] != self.state_dim:
            raise ValueError(f"states: last dimension must be {self.state_dim}, got shape {x.shape}")
        return self(torch.as_tensor(x)).numpy()


@dataclass(frozen=True)
class FitReport:
    accuracy: float  # sign agreement on the training set, after calibration
    false_safe_rate: float  # share of truly unviable samples predicted viable
    false_unsafe_rate: float  # share of truly viable samples predicted unviable
    offset: float  # conservative shift subtracted from the margin
    final_loss: float
    samples: int


def classification_metrics(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Sign metrics. false_safe_rate is over the truly unviable samples (the number that matters)."""
    pred_safe = np.asarray(predicted) >= 0.0
    true_safe = np.asarray(truth) >= 0.0
    n_unsafe = int((~true_safe).sum())
    n_safe = int(true_safe.sum())
    return {
        "accuracy": float((pred_safe == true_safe).mean()) if pred_safe.size else float("nan"),
        "false_safe_rate": float((pred_safe & ~true_safe).sum() / n_unsafe) if n_unsafe else 0.0,
        "false_unsafe_rate": float((~pred_safe & true_safe).sum() / n_safe) if n_safe else 0.0,
    }


def fit_viability(
    net: ViabilityNet,
    states: np.ndarray,
    margins: np.ndarray,
    *,
    boundary_weight: float = 10.0,
    epochs: int = 1500,
    lr: float = 3e-3,
    seed: int = 0,
    false_safe_weight: float = 20.0,
    batch_size: int = 2048,
    target_false_safe: float = 0.0,
) -> dict[str, float]:
    """Fit ``net`` to (state, margin) samples and calibrate its conservative offset.

    Loss per sample: w * (huber(pred - m) + false_safe_weight * relu(pred - m)^2 [m < 0]), where
    w = 1 + boundary_weight * exp(-|m| / band) emphasises the boundary (band = 5% of the margin spread).
    Over-predicting a negative margin is what lets an unsafe action through, so it costs extra.
    After training, ``offset`` is raised until at most ``target_false_safe`` of the unviable training
    samples are predicted viable. ``epochs`` counts optimiser steps over mini-batches.
    """
    x = np.asarray(states, dtype=np.float32)
    m = np.asarray(margins, dtype=np.float32).reshape(-1)
    if x.ndim != 2 or x.shape[1] != net.state_dim:
        raise ValueError(f"states: expected shape (N, {net.state_dim}), got {x.shape}")
    if m.shape[0] != x.shape[0]:
        raise ValueError(f"margins: expected {x.shape[0]} values (one per state), got {m.shape[0]}")
    if x.shape[0] < 2:
        raise ValueError("states: need at least two samples")
    if not (np.isfinite(x).all() and np.isfinite(m).all()):
        raise ValueError("states/margins: must be finite")
    for name, value in (("boundary_weight", boundary_weight), ("false_safe_weight", false_safe_weight)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}: must be finite and >= 0, got {value}")
    if epochs <= 0:
        raise ValueError(f"epochs: must be > 0, got {epochs}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: must be > 0, got {lr}")
    if not 0.0 <= target_false_safe < 1.0:
        raise ValueError(f"target_false_safe: must be in [0, 1), got {target_false_safe}")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small MLP gains nothing from threads and loses a lot on a busy machine
    try:
        return _fit(net, x, m, boundary_weight, epochs, lr, seed, false_safe_weight, batch_size, target_false_safe)
    finally:
        torch.set_num_threads(threads)


def _fit(
    net: ViabilityNet,
    x: np.ndarray,
    m: np.ndarray,
    boundary_weight: float,
    epochs: int,
    lr: float,
    seed: int,
    false_safe_weight: float,
    batch_size: int,
    target_false_safe: float,
) -> dict[str, float]:
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    for module in net.mlp:  # re-initialise from the seed so a fit is reproducible
        if isinstance(module, nn.Linear):
            module.reset_parameters()
    scale = float(np.percentile(np.abs(m), 90)) or 1.0
    band = 0.05 * float(m.max() - m.min()) or 1.0
    with torch.no_grad():
        net.margin_scale.fill_(scale)
        net.offset.zero_()
    xt, mt = torch.as_tensor(x), torch.as_tensor(m)
    weight = 1.0 + boundary_weight * torch.exp(-mt.abs() / band)
    unsafe = (mt < 0).float()
    opt = torch.optim.Adam(net.mlp.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=lr * 0.02)
    n = x.shape[0]
    loss_value = float("nan")
    net.train()
    for _ in range(epochs):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        err = (net.raw(xt[idx]) - mt[idx]) / scale
        over = torch.relu(err)
        per_sample = nn.functional.huber_loss(err, torch.zeros_like(err), reduction="none", delta=0.1)
        per_sample = per_sample + false_safe_weight * unsafe[idx] * over.square()
        loss = (weight[idx] * per_sample).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
    net.eval()
    with torch.no_grad():
        raw = net.raw(xt).numpy()
    offset = calibrate_offset(raw, m, target_false_safe)
    with torch.no_grad():
        net.offset.fill_(offset)
    metrics = classification_metrics(raw - offset, m)
    report = FitReport(
        accuracy=metrics["accuracy"],
        false_safe_rate=metrics["false_safe_rate"],
        false_unsafe_rate=metrics["false_unsafe_rate"],
        offset=offset,
        final_loss=loss_value,
        samples=n,
    )
    return asdict(report)


def calibrate_offset(raw: np.ndarray, truth: np.ndarray, target_false_safe: float) -> float:
    """Smallest shift >= 0 such that at most ``target_false_safe`` of the unviable samples stay >= 0."""
    bad = np.sort(raw[truth < 0])[::-1]  # predictions on truly unviable samples, largest first
    allowed = math.floor(target_false_safe * bad.size)
    if bad.size == 0 or allowed >= bad.size or bad[allowed] < 0:
        return 0.0
    # shift just past the (allowed+1)-th largest so that it becomes strictly negative
    worst = float(bad[allowed])
    return worst + 1e-6 * max(1.0, abs(worst))


def _expected_tensors(net: ViabilityNet) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(v.shape), "float32") for k, v in net.state_dict().items()}


def save_viability(path: str | Path, net: ViabilityNet, metadata: dict[str, Any] | None = None) -> Path:
    """Write the network as safetensors; architecture and provenance go to the JSON metadata."""
    meta = dict(metadata or {})
    meta.update(
        format=FORMAT,
        state_names=list(net.state_names),
        lo=[float(v) for v in net.lo.tolist()],
        hi=[float(v) for v in net.hi.tolist()],
        hidden=list(net.hidden),
    )
    meta.setdefault("source", "unknown")
    tensors = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    return checkpoint.save(path, tensors, meta)


def load_viability(path: str | Path) -> tuple[ViabilityNet, dict[str, Any]]:
    """Read a file written by ``save_viability``; raise CheckpointError naming the field or tensor."""
    tensors, meta = checkpoint.load(path)
    src = str(path)
    checkpoint.check_meta(meta, src, format=FORMAT)
    names = meta.get("state_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{src}: field 'state_names' must be a non-empty list of strings")
    for key in ("lo", "hi"):
        vals = meta.get(key)
        if (
            not isinstance(vals, list)
            or len(vals) != len(names)
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in vals)
        ):
            raise CheckpointError(f"{src}: field '{key}' must be {len(names)} finite numbers")
    hidden = meta.get("hidden")
    if not isinstance(hidden, list) or not hidden or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise CheckpointError(f"{src}: field 'hidden' must be a non-empty list of positive integers")
    try:
        net = ViabilityNet(names, meta["lo"], meta["hi"], hidden)
    except ValueError as exc:
        raise CheckpointError(f"{src}: {exc}") from None
    checkpoint.check_tensors(tensors, _expected_tensors(net), src)
    for name, t in tensors.items():
        if not np.isfinite(t).all():
            raise CheckpointError(f"{src}: tensor '{name}' holds non-finite values")
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
    if not (np.allclose(net.lo.numpy(), meta["lo"]) and np.allclose(net.hi.numpy(), meta["hi"])):
        raise CheckpointError(f"{src}: tensors 'lo'/'hi' disagree with fields 'lo'/'hi'")
    net.eval()
    return net, meta
