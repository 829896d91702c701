"""A small MLP regressor trained online from a bounded ring buffer: the shield's learned parts share it."""

from __future__ import annotations

import numpy as np


class OnlineRegressor:
    """MLP ``n_in -> hidden -> hidden -> n_out`` (SiLU); ``add`` rows, ``train`` on random minibatches."""

    def __init__(self, n_in: int, n_out: int, *, hidden: int, lr: float, batch_size: int, buffer_size: int,
                 seed: int) -> None:
        import torch
        from torch import nn

        self._torch = torch
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, n_out))
        self._linears = [m for m in self.net if isinstance(m, nn.Linear)]
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.batch_size = batch_size
        self.buffer_size = buffer_size
        self._rng = np.random.default_rng(seed)
        self.x = np.zeros((buffer_size, n_in), dtype=np.float32)
        self.y = np.zeros((buffer_size, n_out), dtype=np.float32)
        self.count = 0  # rows ever added
        self.trained_on = 0  # rows seen by the optimiser (counted per minibatch row)

    @property
    def stored(self) -> int:
        return min(self.count, self.buffer_size)

    def add(self, x: np.ndarray, y: np.ndarray) -> int:
        slots = (self.count + np.arange(len(x))) % self.buffer_size
        self.x[slots], self.y[slots] = x, y
        self.count += len(x)
        return len(x)

    def train(self, steps: int) -> float:
        """``steps`` Adam steps on MSE; returns the last loss."""
        torch, n = self._torch, self.stored
        if n == 0:
            raise ValueError("train: no samples stored yet")
        loss_value = float("nan")
        for _ in range(steps):
            idx = self._rng.integers(0, n, size=min(self.batch_size, n))
            loss = torch.nn.functional.mse_loss(self.net(torch.as_tensor(self.x[idx])), torch.as_tensor(self.y[idx]))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            loss_value = float(loss.detach())
            self.trained_on += len(idx)
        return loss_value

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The forward pass in numpy, on views of the torch parameters (no copy, so always current): at the
        batch sizes of one shield decision torch's per-call overhead costs more than the arithmetic."""
        h = np.asarray(x, dtype=np.float32)
        for i, layer in enumerate(self._linears):
            h = h @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()
            if i < len(self._linears) - 1:
                with np.errstate(over="ignore"):  # exp overflow gives h / inf = 0, SiLU's limit
                    h = h / (1.0 + np.exp(-h))
        return h
