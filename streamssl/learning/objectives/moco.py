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

**Continuity positives** (``horizon_s`` > 0). Live audio has speaker continuity: a person
talks for seconds to minutes before another takes over (Ravanelli & Bengio 2018 learn
speaker identity from exactly that: chunks of one utterance are positives, chunks of
other utterances negatives). So the queue's own keys of the query's stream from the last
``horizon_s`` seconds, in the query's *segment*, are positives too (other sentences, other
words, same voice and room), and the loss sums over every positive inside the log
(MIL-NCE; a few false positives cost little):

    L = -log( sum_{p in P} exp(q.k_p / tau) / sum_{j in P or N} exp(q.k_j / tau) )

A positive that crosses a turn change is a false positive, so each slot also carries a
segment id: a new key continues the segment of its stream's newest key when that key is
at most ``MAX_GAP_S`` older and their similarity is not unusually low (above the running
mean of such similarities minus ``CHANGE_Z`` running standard deviations); otherwise it
opens a new segment (a turn change, a long pause or non-speech, a restart). The query is
placed the same way through its adjacent key.
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


MAX_GAP_S = 1.5  # a stream silent for longer (shed, restarted) starts a new segment
CHANGE_Z = 2.5  # a similarity this many running stds below its running mean is a change
SIM_WARMUP = 64  # similarities seen before a low one can mark a change (the statistics settle first)
SIM_ALPHA = 0.01  # weight of the newest similarity in the running mean and variance


def multi_positive_loss(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, pos_mask: torch.Tensor, neg_mask: torch.Tensor,
    temperature: float, valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE with several positives summed inside the log: the adjacent key k (where ``valid``)
    and the queue slots of ``pos_mask`` (B, K); negatives are the slots not in ``neg_mask``.
    Rows with no positive at all are left out of the mean."""
    q, k, queue = q.float(), k.float(), queue.float()
    l_adj = (q * k).sum(-1, keepdim=True) / temperature  # (B, 1)
    l_q = q @ queue.T / temperature  # (B, K)
    adj_ok = torch.ones_like(l_adj, dtype=torch.bool) if valid is None else valid[:, None]
    neg_inf = torch.tensor(float("-inf"), device=q.device)
    pos = torch.cat([l_adj.where(adj_ok, neg_inf), l_q.where(pos_mask, neg_inf)], 1)
    every = torch.cat([l_adj.where(adj_ok, neg_inf), l_q.where(pos_mask | ~neg_mask, neg_inf)], 1)
    has_pos = adj_ok[:, 0] | pos_mask.any(1)
    per_row = torch.logsumexp(every, 1) - torch.logsumexp(pos, 1)
    per_row = per_row.where(has_pos, torch.zeros_like(per_row))
    w = has_pos.to(per_row.dtype)
    return (per_row * w).sum() / w.sum().clamp_min(1.0)


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
        momentum: float, temperature: float, exclude_recent_s: float, horizon_s: float = 0.0,
    ):
        super().__init__()
        self.key_backbone = copy.deepcopy(backbone)
        self.key_projection = copy.deepcopy(projection)
        for p in [*self.key_backbone.parameters(), *self.key_projection.parameters()]:
            p.requires_grad_(False)
        self.momentum = momentum
        self.temperature = temperature
        self.exclude_ns = int(exclude_recent_s * 1e9)
        self.horizon_ns = int(horizon_s * 1e9)
        self.register_buffer("queue", torch.zeros(queue_size, proj_dim))  # (K, P)
        self.register_buffer("queue_stream", torch.zeros(queue_size, dtype=torch.long))  # stream hash per slot
        self.register_buffer("queue_time", torch.zeros(queue_size, dtype=torch.long))  # capture_ns per slot
        self.register_buffer("queue_valid", torch.zeros(queue_size, dtype=torch.bool))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.register_buffer("queue_segment", torch.zeros(queue_size, dtype=torch.long))  # continuity segment id
        # Running mean, variance and count of consecutive same-stream key similarities (change detection).
        self.register_buffer("sim_stats", torch.tensor([1.0, 0.0, 0.0]))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # Checkpoints from before continuity positives lack these buffers: every old slot its own segment.
        for name, default in (("queue_segment", None), ("sim_stats", self.sim_stats)):
            if prefix + name not in state_dict:
                state_dict[prefix + name] = (-1 - torch.arange(self.queue.shape[0])) if default is None else default.clone()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

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
        over the rows whose positive pair is ``valid`` (e.g. within one utterance); with a horizon,
        the rows' continuity positives from the queue join in (module docstring)."""
        neg_mask = self.negative_mask(stream, time_ns)
        if self.horizon_ns <= 0:
            return moco_loss(q, k, self.queue, neg_mask, self.temperature, valid)
        return multi_positive_loss(q, k, self.queue, self.positive_mask(k, stream, time_ns), neg_mask,
                                   self.temperature, valid)

    @torch.no_grad()
    def _latest(self, key: torch.Tensor, stream: torch.Tensor, time_ns: torch.Tensor):
        """For each (key, stream, time): the segment it continues, -1 where it opens one, and the
        similarity to its stream's newest earlier slot (NaN where there is none)."""
        earlier = self.queue_valid[None, :] & (stream[:, None] == self.queue_stream[None, :]) & (
            self.queue_time[None, :] < time_ns[:, None])  # (B, K)
        newest = self.queue_time[None, :].expand_as(earlier).masked_fill(~earlier, -1).argmax(1)  # (B,)
        found = earlier.any(1)
        near = (time_ns - self.queue_time[newest]) <= int(MAX_GAP_S * 1e9)
        sim = (key.float() * self.queue[newest].float()).sum(1)
        mean, var, count = self.sim_stats
        usual = (count < SIM_WARMUP) | (sim >= mean - CHANGE_Z * var.clamp_min(0).sqrt())
        cont = found & near & usual
        segment = self.queue_segment[newest].where(cont, torch.full_like(newest, -1))
        return segment, sim.where(found & near, torch.full_like(sim, float("nan")))

    @torch.no_grad()
    def positive_mask(self, k: torch.Tensor, stream: torch.Tensor, time_ns: torch.Tensor) -> torch.Tensor:
        """(B, K) True where a slot is a continuity positive of the row: its stream, its segment
        (placed through the row's adjacent key ``k``), at most ``horizon_s`` earlier."""
        segment, _ = self._latest(k, stream, time_ns)
        age = time_ns[:, None] - self.queue_time[None, :]
        return (self.queue_valid[None, :] & (stream[:, None] == self.queue_stream[None, :])
                & (self.queue_segment[None, :] == segment[:, None]) & (segment[:, None] >= 0)
                & (age > 0) & (age <= self.horizon_ns))

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
        if self.horizon_ns > 0:  # one at a time, oldest first: each key continues or opens its stream's segment
            for i in torch.argsort(time_ns).tolist():
                self._enqueue(keys[i : i + 1], stream[i : i + 1], time_ns[i : i + 1])
            return
        self._enqueue(keys, stream, time_ns)

    def _enqueue(self, keys: torch.Tensor, stream: torch.Tensor, time_ns: torch.Tensor) -> None:
        size = self.queue.shape[0]
        n = keys.shape[0]
        if self.horizon_ns > 0:
            segment, sim = self._latest(keys, stream, time_ns)
            segment = segment.where(segment >= 0, time_ns)  # a new segment is named by its first key's time
            seen = ~torch.isnan(sim)
            if bool(seen.any()):
                mean, var, count = self.sim_stats.unbind()
                x = sim[seen].mean()
                a = max(SIM_ALPHA, 1.0 / (float(count) + 1.0))
                d = x - mean
                self.sim_stats.copy_(torch.stack([mean + a * d, (1 - a) * (var + a * d * d), count + 1]))
        idx = (torch.arange(n, device=keys.device) + self.queue_ptr) % size  # pointer stays on the device: no sync
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_stream[idx] = stream
        self.queue_time[idx] = time_ns
        self.queue_valid[idx] = True
        if self.horizon_ns > 0:
            self.queue_segment[idx] = segment
        self.queue_ptr.add_(n).remainder_(size)
