"""The networks: encoder f (causal convs) then context g (GRU / causal transformer).

``Backbone`` runs both with optional streaming state; objectives live apart in
``streamssl.learning.objectives`` (CPC_audio's model/criterion split).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from streamssl.config import Config
from streamssl.learning.models.context import GRUContext, MinGRUContext, TransformerContext
from streamssl.learning.models.encoder import CausalConvEncoder
from streamssl.learning.models.heads import ProjectionHead, StepPredictors

__all__ = ["Backbone", "BackboneState", "ProjectionHead", "StepPredictors", "build_backbone"]


RECURRENT = (GRUContext, MinGRUContext)  # state: one hidden vector per layer, (layers, B, dim)


@dataclass
class BackboneState:
    """What a stream carries between chunks: conv caches and the context state."""

    conv: list[torch.Tensor] | None = None
    context: torch.Tensor | None = None


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

    # --- several streams in one call ---------------------------------------------
    # Streaming states of different streams can be stacked along their batch dimension
    # and run together, giving each stream exactly what running it alone would.

    def batch_key(self, state: BackboneState) -> int:
        """States with equal keys stack: the transformer's carried past must be equally long."""
        if isinstance(self.context, TransformerContext) and state.context is not None:
            return int(state.context.shape[1])
        return 0

    def _explicit(self, state: BackboneState, like: torch.Tensor) -> BackboneState:
        """A stream-start state (None) as the zeros the layers would use, so it can be stacked."""
        conv = state.conv
        if conv is None:
            conv = [like.new_zeros(1, b.conv.in_channels, b.kernel_size - 1) for b in self.encoder.blocks]
        ctx = state.context
        if ctx is None and isinstance(self.context, RECURRENT):
            ctx = like.new_zeros(self.context.num_layers, 1, self.dim)
        return BackboneState(conv, ctx)

    def stack_states(self, states: list[BackboneState], like: torch.Tensor) -> BackboneState:
        """One batched state from single-stream states with the same ``batch_key``."""
        full = [self._explicit(s, like) for s in states]
        conv = [torch.cat(layer, dim=0) for layer in zip(*(s.conv for s in full))]
        if full[0].context is None:  # transformer streams that have no past yet
            return BackboneState(conv, None)
        ctx_dim = 1 if isinstance(self.context, RECURRENT) else 0  # recurrent hidden is (layers, B, dim)
        return BackboneState(conv, torch.cat([s.context for s in full], dim=ctx_dim))

    def split_state(self, state: BackboneState) -> list[BackboneState]:
        """The inverse of ``stack_states``: one single-stream state per batch row.

        Each row is copied out: a view would keep the whole batch's tensor alive for as long
        as any one of its streams lives, multiplying a stream's memory by its batch size.
        """
        ctx_dim = 1 if isinstance(self.context, RECURRENT) else 0
        n = state.conv[0].shape[0]
        ctx = [c.clone() for c in state.context.split(1, dim=ctx_dim)] if state.context is not None else [None] * n
        convs = list(zip(*(layer.split(1, dim=0) for layer in state.conv)))
        return [BackboneState([c.clone() for c in convs[i]], ctx[i]) for i in range(n)]


def build_backbone(cfg: Config) -> Backbone:
    m = cfg.model
    encoder = CausalConvEncoder(cfg.features.n_mels, m.encoder_channels, m.encoder_layers, m.kernel_size)
    if m.context == "gru":
        context: nn.Module = GRUContext(m.encoder_channels, m.context_dim, m.context_layers)
    elif m.context == "mingru":
        context = MinGRUContext(m.encoder_channels, m.context_dim, m.context_layers)
    else:
        context = TransformerContext(
            m.encoder_channels, m.context_dim, m.context_layers, m.transformer_heads, m.transformer_window
        )
    return Backbone(encoder, context)
