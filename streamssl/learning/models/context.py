"""Context g: causal sequence model over z_t -> c_t, with state carried between chunks.

GRU (default): the hidden state *is* the stream state, so chunked equals whole exactly.
minGRU: gates that read only the input make the recurrence linear in h, so training
computes all time steps at once (a parallel scan) instead of one after another, and the
stream state is still one vector per layer.
Causal transformer: each frame attends to itself and the previous ``window`` frames of
the layer below (sliding causal mask, no positional encoding: the causal convolutions
of the encoder already give every z_t local order). Because the receptive field is
bounded (``window * layers`` frames), streaming only needs to carry that many past
inputs and recompute them with the new chunk — the same outputs as the whole stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GRUContext(nn.Module):
    """(B, T, in) -> c (B, T, dim); state: GRU hidden (layers, B, dim)."""

    def __init__(self, in_dim: int, dim: int, layers: int):
        super().__init__()
        self.gru = nn.GRU(in_dim, dim, num_layers=layers, batch_first=True)
        self.dim = dim
        self.num_layers = layers

    def forward(self, z: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if z.shape[1] == 0:
            return z.new_zeros(z.shape[0], 0, self.dim), state
        c, h = self.gru(z, state)
        return c, h


def _log_g(v: torch.Tensor) -> torch.Tensor:
    """log g(v) with g(v) = v + 0.5 for v >= 0, sigmoid(v) below: continuous, always > 0."""
    return torch.where(v >= 0, torch.log(torch.relu(v) + 0.5), -F.softplus(-v))


class MinGRULayer(nn.Module):
    """h_t = (1 - z_t) h_{t-1} + z_t g(W_h x_t), z_t = sigmoid(W_z x_t) (Feng et al. 2024,
    "Were RNNs All We Needed?"), all t at once in log space (Heinsen 2023):

        A_t = sum_{s<=t} log(1 - z_s),  log h_t = A_t + log(h_0 + sum_{s<=t} exp(log z_s + log g_s - A_s))

    ``torch.logcumsumexp`` gives the running log-sum; h_0 (the carried state, > 0) joins
    through ``logaddexp``, so a stream cut into chunks gets what the whole stream gets.
    The scan runs in float64: A_t and the log-sum grow to tens over a second of frames and
    their difference is O(1), so float32 lost ~1e-6 relative per step, which after the
    output LayerNorm made a chunked stream differ from the whole one by 3e-5 (bf16 would
    not survive at all). The scan is elementwise: next to the gates' matmul its cost is small."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.gates = nn.Linear(in_dim, 2 * dim)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
        k, v = self.gates(x).double().chunk(2, dim=-1)  # (B, T, dim) each
        log_keep = -F.softplus(k)  # log(1 - z)
        log_b = -F.softplus(-k) + _log_g(v)  # log z + log g(v)
        a = log_keep.cumsum(dim=1)
        log_h = a + torch.logcumsumexp(log_b - a, dim=1)
        if h0 is not None:
            log_h = torch.logaddexp(log_h, a + torch.log(h0.double()).unsqueeze(1))
        return log_h.exp().to(x.dtype)


class MinGRUContext(nn.Module):
    """(B, T, in) -> c (B, T, dim); state: each layer's last h (layers, B, dim), like the GRU's.

    Layer 1 maps z_t to ``dim``; later layers are pre-norm residual (x + minGRU(LayerNorm(x))),
    and a LayerNorm reads the output, since h itself is positive and unbounded."""

    def __init__(self, in_dim: int, dim: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList([MinGRULayer(in_dim if i == 0 else dim, dim) for i in range(layers)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(layers - 1)])
        self.out = nn.LayerNorm(dim)
        self.dim = dim
        self.num_layers = layers

    def forward(self, z: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if z.shape[1] == 0:
            return z.new_zeros(z.shape[0], 0, self.dim), state
        last = []
        x = self.layers[0](z, None if state is None else state[0])
        last.append(x[:, -1])
        for i, layer in enumerate(self.layers[1:], start=1):
            h = layer(self.norms[i - 1](x), None if state is None else state[i])
            last.append(h[:, -1])
            x = x + h
        # A fresh stream's state is zeros (Backbone._explicit): log 0 = -inf joins as nothing.
        return self.out(x).to(z.dtype), torch.stack(last)


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
