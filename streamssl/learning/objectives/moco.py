"""MoCo — momentum contrast (He et al., "Momentum Contrast for Unsupervised Visual
Representation Learning", CVPR 2020; v2 projection head: Chen et al. 2020), for audio windows.

A query encoder (the learner's own backbone + projection) and a momentum key encoder
embed two views; the keys of earlier windows wait in a FIFO
queue of K slots and serve as negatives:

    q = normalize(g_q(view_1)),  k+ = normalize(g_k(view_2)),  queue = {k_1..k_K}
    L_MoCo = -log  exp(q.k+ / tau) / (exp(q.k+ / tau) + sum_{j valid} exp(q.k_j / tau))
    theta_k <- m theta_k + (1 - m) theta_q          (after every optimizer step)

The two views are two *different* segments of one stream close in time (the window and
the audio just before it, ``streamssl.learning.views``), each through its own random
channel; a pair that spans a pause is left out of the mean (``valid``).

A live stream's own recent keys are false negatives (the same speaker a second ago), so
each slot remembers the stream (a 64-bit hash of its id) and capture time of its window,
and a slot from the query's stream within ``exclude_recent_s`` of the query's capture time
is masked out (logit -inf). Slots never written yet are masked too: no invented negatives,
so the loss is honest from the first window.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from streamssl.learning.models import Backbone, ProjectionHead


def moco_logits(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, neg_mask: torch.Tensor, temperature: float
) -> torch.Tensor:
    """q, k: (B, P) unit; queue: (K, P) unit; neg_mask: (B, K) True = not a negative -> logits (B, 1+K)."""
    l_pos = (q * k).sum(-1, keepdim=True)  # (B, 1)
    l_neg = q @ queue.T  # (B, K)
    l_neg = l_neg.masked_fill(neg_mask, float("-inf"))
    return torch.cat([l_pos, l_neg], dim=1) / temperature


def moco_loss(q, k, queue, neg_mask, temperature: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE with the positive in column 0, averaged over the rows whose pair is ``valid`` (all if None)."""
    logits = moco_logits(q.float(), k.float(), queue.float(), neg_mask, temperature)
    per_row = F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device), reduction="none")
    if valid is None:
        return per_row.mean()
    w = valid.to(per_row.dtype)
    return (per_row * w).sum() / w.sum().clamp_min(1.0)


class MoCo(nn.Module):
    """Owns the momentum key encoder and the key queue (buffers, so they checkpoint with it)."""

    def __init__(
        self, backbone: Backbone, projection: ProjectionHead, proj_dim: int, queue_size: int,
        momentum: float, temperature: float, exclude_recent_s: float,
    ):
        super().__init__()
        self.key_backbone = copy.deepcopy(backbone)
        self.key_projection = copy.deepcopy(projection)
        for p in [*self.key_backbone.parameters(), *self.key_projection.parameters()]:
            p.requires_grad_(False)
        self.momentum = momentum
        self.temperature = temperature
        self.exclude_ns = int(exclude_recent_s * 1e9)
        self.register_buffer("queue", torch.zeros(queue_size, proj_dim))  # (K, P)
        self.register_buffer("queue_stream", torch.zeros(queue_size, dtype=torch.long))  # stream hash per slot
        self.register_buffer("queue_time", torch.zeros(queue_size, dtype=torch.long))  # capture_ns per slot
        self.register_buffer("queue_valid", torch.zeros(queue_size, dtype=torch.bool))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @property
    def fill(self) -> float:
        return float(self.queue_valid.float().mean().item())

    @torch.no_grad()
    def momentum_update(self, backbone: Backbone, projection: ProjectionHead) -> None:
        """theta_k <- m theta_k + (1 - m) theta_q."""
        pairs = [(backbone, self.key_backbone), (projection, self.key_projection)]
        for q_mod, k_mod in pairs:
            for pq, pk in zip(q_mod.parameters(), k_mod.parameters()):
                pk.mul_(self.momentum).add_(pq.detach(), alpha=1.0 - self.momentum)

    @staticmethod
    def query(projection: ProjectionHead, c: torch.Tensor) -> torch.Tensor:
        """Online context frames (B, T, D) -> unit queries (B, P), with grad: pooled, projected, normalised."""
        return F.normalize(projection(c.mean(1)).float(), dim=1)

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel view (B, T, F) -> unit keys (B, P) from the momentum encoder."""
        _, c, _ = self.key_backbone(x)
        return self.query(self.key_projection, c)

    def negative_mask(self, stream: torch.Tensor, time_ns: torch.Tensor) -> torch.Tensor:
        """(B,) stream hashes and capture times -> (B, K) True where a slot must not be a negative."""
        same = stream[:, None] == self.queue_stream[None, :]
        recent = (time_ns[:, None] - self.queue_time[None, :]).abs() < self.exclude_ns
        return (same & recent) | ~self.queue_valid[None, :]

    def loss(
        self, q: torch.Tensor, k: torch.Tensor, stream: torch.Tensor, time_ns: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """q: (B, P) unit queries with grad; k: (B, P) unit keys -> scalar InfoNCE against the queue
        over the rows whose positive pair is ``valid`` (e.g. within one utterance)."""
        return moco_loss(q, k, self.queue, self.negative_mask(stream, time_ns), self.temperature, valid)

    def in_batch_loss(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """InfoNCE with the batch's other keys as negatives: comparable between a fresh and a trained
        learner (the training queue starts empty), so evaluation uses it."""
        logits = q.float() @ k.float().T / self.temperature  # (B, B), positives on the diagonal
        return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))

    @torch.no_grad()
    def dequeue_and_enqueue(self, keys: torch.Tensor, stream: torch.Tensor, time_ns: torch.Tensor) -> None:
        """Write keys (N, P) at the pointer, wrapping around; the oldest slots are overwritten."""
        size = self.queue.shape[0]
        if keys.shape[0] > size:
            keys, stream, time_ns = keys[-size:], stream[-size:], time_ns[-size:]
        n = keys.shape[0]
        idx = (torch.arange(n, device=keys.device) + self.queue_ptr) % size  # pointer stays on the device: no sync
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_stream[idx] = stream
        self.queue_time[idx] = time_ns
        self.queue_valid[idx] = True
        self.queue_ptr.add_(n).remainder_(size)
