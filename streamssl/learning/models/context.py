"""Context g: causal sequence model over z_t -> c_t, with state carried between chunks.

GRU (default): the hidden state *is* the stream state, so chunked equals whole exactly.
Causal transformer: each frame attends to itself and the previous ``window`` frames of
the layer below (sliding causal mask, no positional encoding: the causal convolutions
of the encoder already give every z_t local order). Because the receptive field is
bounded (``window * layers`` frames), streaming only needs to carry that many past
inputs and recompute them with the new chunk — the same outputs as the whole stream.
"""

from __future__ import annotations

import torch
from torch import nn


class GRUContext(nn.Module):
    """(B, T, in) -> c (B, T, dim); state: GRU hidden (layers, B, dim)."""

    def __init__(self, in_dim: int, dim: int, layers: int):
        super().__init__()
        self.gru = nn.GRU(in_dim, dim, num_layers=layers, batch_first=True)
        self.dim = dim

    def forward(self, z: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if z.shape[1] == 0:
            return z.new_zeros(z.shape[0], 0, self.dim), state
        c, h = self.gru(z, state)
        return c, h


class TransformerContext(nn.Module):
    """(B, T, in) -> c (B, T, dim); state: the last ``window * layers`` projected inputs (B, P, dim)."""

    def __init__(self, in_dim: int, dim: int, layers: int, heads: int, window: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.window = window
        self.carry = window * layers
        self.dim = dim

    def forward(self, z: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.proj(z)  # (B, T, dim)
        past = state if state is not None else x.new_zeros(x.shape[0], 0, self.dim)
        full = torch.cat([past, x], dim=1)  # (B, P + T, dim)
        n = full.shape[1]
        i = torch.arange(n, device=z.device)
        blocked = (i[None, :] > i[:, None]) | (i[:, None] - i[None, :] > self.window)  # (n, n) True = no attention
        mask = torch.zeros(n, n, device=z.device, dtype=x.dtype).masked_fill(blocked, float("-inf"))
        out = self.layers(full, mask=mask) if n else full
        return out[:, past.shape[1] :], full[:, max(0, n - self.carry) :]
