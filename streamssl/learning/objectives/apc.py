"""APC — autoregressive predictive coding (Chung et al., "An Unsupervised Autoregressive
Model for Speech Representation Learning", Interspeech 2019).

    L_APC = 1 / (B (T - n) F) * sum_{b, t < T-n} || W c_{b,t} - x_{b,t+n} ||_1

c_t is the causal context, x the normalised log-mel and n the shift (default 3 frames =
30 ms): far enough ahead that copying the present frame does not solve it.
"""

from __future__ import annotations

import torch
from torch import nn


def apc_loss(pred: torch.Tensor, target: torch.Tensor, shift: int) -> torch.Tensor:
    """pred: (B, T, F) from c_t; target: (B, T, F) frames; mean L1 of pred[t] vs target[t + shift]."""
    t = pred.shape[1]
    if t <= shift:
        return pred.sum() * 0.0
    return (pred[:, : t - shift] - target[:, shift:]).abs().mean()


class APC(nn.Module):
    """Linear head on c_t predicting the normalised log-mel frame ``shift`` steps ahead."""

    def __init__(self, context_dim: int, n_mels: int, shift: int):
        super().__init__()
        self.head = nn.Linear(context_dim, n_mels)
        self.shift = shift

    def forward(self, c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """c: (B, T, D); x: normalised log-mel (B, T, F) -> scalar loss."""
        return apc_loss(self.head(c), x.detach(), self.shift)
