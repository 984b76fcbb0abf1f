"""Small heads on top of the context: MoCo's projection MLP and per-step linear predictors."""

from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Module):
    """MoCo v2 projection: Linear -> ReLU -> Linear; its output is L2-normalised by the objective."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim))

    def forward(self, x):
        return self.net(x)


class StepPredictors(nn.Module):
    """One linear map per prediction step k = 1..K (CPC's W_k): c_t (dim) -> predicted z_{t+k} (out)."""

    def __init__(self, in_dim: int, out_dim: int, steps: int):
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(in_dim, out_dim, bias=False) for _ in range(steps))

    def forward(self, c):
        """(B, T, in) -> list of K tensors (B, T, out)."""
        return [m(c) for m in self.maps]
