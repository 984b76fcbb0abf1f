"""The networks: encoder f (causal convs) then context g (GRU / causal transformer).

``Backbone`` runs both with optional streaming state; objectives live apart in
``streamssl.objectives`` (CPC_audio's model/criterion split).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from streamssl.config import Config
from streamssl.models.context import GRUContext, TransformerContext
from streamssl.models.encoder import CausalConvEncoder
from streamssl.models.heads import ProjectionHead, StepPredictors

__all__ = ["Backbone", "BackboneState", "ProjectionHead", "StepPredictors", "build_backbone"]


@dataclass
class BackboneState:
    """What a stream carries between chunks: conv caches and the context state."""

    conv: list[torch.Tensor] | None = None
    context: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)


class Backbone(nn.Module):
    """Normalised log-mel (B, T, n_mels) -> z (B, T, C), c (B, T, D)."""

    def __init__(self, encoder: CausalConvEncoder, context: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.context = context
        self.z_dim = encoder.out_dim
        self.dim = context.dim

    def forward(
        self, x: torch.Tensor, state: BackboneState | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, BackboneState]:
        state = state or BackboneState()
        z, conv = self.encoder(x, state.conv)
        c, ctx = self.context(z, state.context)
        return z, c, BackboneState(conv, ctx)


def build_backbone(cfg: Config) -> Backbone:
    m = cfg.model
    encoder = CausalConvEncoder(cfg.features.n_mels, m.encoder_channels, m.encoder_layers, m.kernel_size)
    if m.context == "gru":
        context: nn.Module = GRUContext(m.encoder_channels, m.context_dim, m.context_layers)
    else:
        context = TransformerContext(
            m.encoder_channels, m.context_dim, m.context_layers, m.transformer_heads, m.transformer_window
        )
    return Backbone(encoder, context)
