"""Encoder f: causal 1-D convolutions over log-mel frames -> z_t.

Causal means frame t sees frames <= t only: each convolution is left-padded with
``kernel_size - 1`` frames. In streaming use the padding is the previous chunk's last
input frames (the *cache*), and zeros at stream start, so a chunked stream gives the
same z_t as the whole stream. Normalisation is LayerNorm over channels per frame
(ChannelNorm, as in CPC_audio); BatchNorm would couple a window to its batch and to
the running statistics of a drifting stream.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CausalConvBlock(nn.Module):
    """conv (left context only) -> LayerNorm over channels -> ReLU, residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size)
        self.norm = nn.LayerNorm(out_ch)
        self.residual = in_ch == out_ch

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C_in, T); cache: (B, C_in, k-1) or None (zeros) -> (B, C_out, T), new cache."""
        k = self.kernel_size - 1
        if cache is None:
            cache = x.new_zeros(x.shape[0], x.shape[1], k)
        full = torch.cat([cache, x], dim=2)  # (B, C_in, k + T)
        y = self.conv(full)  # (B, C_out, T)
        y = F.relu(self.norm(y.transpose(1, 2))).transpose(1, 2)
        if self.residual:
            y = y + x
        return y, full[:, :, full.shape[2] - k :]


class CausalConvEncoder(nn.Module):
    """(B, T, n_mels) -> z (B, T, channels); ``caches`` carry the left context between chunks."""

    def __init__(self, n_mels: int, channels: int, layers: int, kernel_size: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            CausalConvBlock(n_mels if i == 0 else channels, channels, kernel_size) for i in range(layers)
        )
        self.out_dim = channels

    def forward(
        self, x: torch.Tensor, caches: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.shape[1] == 0:  # nothing new: the left context is unchanged
            return x.new_zeros(x.shape[0], 0, self.out_dim), caches
        h = x.transpose(1, 2)  # (B, n_mels, T)
        new = []
        for i, block in enumerate(self.blocks):
            h, c = block(h, caches[i] if caches is not None else None)
            new.append(c)
        return h.transpose(1, 2), new
