"""MoCo — momentum contrast (He et al., "Momentum Contrast for Unsupervised Visual
Representation Learning", CVPR 2020; v2 projection head from Chen et al. 2020), as
in facebookresearch/moco ``builder.py``: a query encoder, a momentum key encoder, and
a FIFO queue of past keys as negatives.

    L_MoCo = -1/B sum_b log  exp(q_b . k_b / tau) / (exp(q_b . k_b / tau) + sum_{j in N_b} exp(q_b . queue_j / tau))

q_b and k_b are L2-normalised projections of two augmented views of window b (query
encoder / key encoder). The key encoder follows the query encoder by
theta_k <- m theta_k + (1 - m) theta_q. N_b is every filled queue slot *except* keys
of the same stream captured within ``exclude_recent_s`` of window b: on a live stream
the last few seconds sound like the present, so treating them as negatives would
push apart what should be close (false negatives).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F


def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, neg_mask: torch.Tensor, tau: float) -> torch.Tensor:
    """q, k: (B, P) normalised; queue: (K, P); neg_mask: (B, K) True where a slot is a usable negative."""
    pos = (q * k).sum(-1, keepdim=True)  # (B, 1)
    neg = q @ queue.T  # (B, K)
    neg = neg.masked_fill(~neg_mask, float("-inf"))
    logits = torch.cat([pos, neg], dim=1) / tau  # (B, 1+K)
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits.float(), target)


class MoCo(nn.Module):
    """Projection head, momentum key encoder (backbone + head copy) and the key queue.

    The queue, its pointer and per-slot metadata are buffers, so they checkpoint with
    the model: ``queue`` (K, P) keys, ``queue_stream`` (K,) stream hash, ``queue_time``
    (K,) capture time in seconds, ``queue_valid`` (K,) filled slots, ``queue_ptr``.
    """

    def __init__(self, backbone: nn.Module, dim: int, proj_dim: int, queue_size: int, momentum: float,
                 temperature: float, exclude_recent_s: float):
        super().__init__()
        self.projection = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, proj_dim))
        self.key_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.key_projection = copy.deepcopy(self.projection).requires_grad_(False)
        self.momentum = momentum
        self.temperature = temperature
        self.exclude_recent_s = exclude_recent_s
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_stream", torch.zeros(queue_size, dtype=torch.long))
        self.register_buffer("queue_time", torch.zeros(queue_size, dtype=torch.float64))
        self.register_buffer("queue_valid", torch.zeros(queue_size, dtype=torch.bool))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def fill(self) -> float:
        return float(self.queue_valid.float().mean())

    def query(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled context of the query view (B, D) -> normalised (B, P)."""
        return F.normalize(self.projection(pooled), dim=1)

    @torch.no_grad()
    def key(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel of the key view (B, T, F) -> normalised keys (B, P)."""
        _, c, _ = self.key_backbone(x)
        return F.normalize(self.key_projection(c.mean(1)), dim=1)

    def negatives_mask(self, stream: torch.Tensor, time_s: torch.Tensor) -> torch.Tensor:
        """(B, K): filled slots that are not recent keys of the same stream."""
        same = stream[:, None] == self.queue_stream[None]
        recent = (time_s[:, None] - self.queue_time[None]).abs() < self.exclude_recent_s
        return self.queue_valid[None] & ~(same & recent)

    def loss(self, q: torch.Tensor, k: torch.Tensor, stream: torch.Tensor, time_s: torch.Tensor) -> torch.Tensor:
        return moco_loss(q, k, self.queue.clone(), self.negatives_mask(stream, time_s), self.temperature)

    @torch.no_grad()
    def momentum_update(self, backbone: nn.Module) -> None:
        """theta_k <- m theta_k + (1 - m) theta_q for backbone and projection."""
        pairs = [(backbone, self.key_backbone), (self.projection, self.key_projection)]
        for online, target in pairs:
            for p_q, p_k in zip(online.parameters(), target.parameters()):
                p_k.mul_(self.momentum).add_(p_q.detach(), alpha=1.0 - self.momentum)

    @torch.no_grad()
    def enqueue(self, k: torch.Tensor, stream: torch.Tensor, time_s: torch.Tensor) -> None:
        """FIFO: write keys at the pointer, wrapping around the end of the queue."""
        size = self.queue.shape[0]
        idx = (self.queue_ptr + torch.arange(k.shape[0], device=k.device)) % size
        self.queue[idx] = k
        self.queue_stream[idx] = stream
        self.queue_time[idx] = time_s
        self.queue_valid[idx] = True
        self.queue_ptr.copy_((self.queue_ptr + k.shape[0]) % size)
