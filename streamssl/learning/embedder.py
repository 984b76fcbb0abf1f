"""Embedding with fixed weights: the one implementation, and a copy that serves while the learner trains.

``Embedder`` runs a normaliser and a backbone without gradients and pools their frames
with the readout. ``LearnerCore.embedder`` is a view over the training modules
themselves (no copy), right when one thread both embeds and trains.

``ServingWeights`` is what lets embedding run beside a training step instead of behind
it (``learner.serve_while_learning``). It holds two deep copies of the modules that
change with training (normaliser statistics and backbone; the log-mel front end is
constant): the *front* one serves, the *back* one receives the weights after each
optimizer step (``publish``: ``load_state_dict`` copies into the existing tensors, no
allocation). The swap itself is a reference exchange under a lock that every embedding
call holds for its duration, so:

- a window is embedded entirely with one step's weights, never with a half-copied mix;
- the training thread never writes into weights being read (the back copy is used by no
  one: an embedding that began on it finished before the swap could take the lock);
- serving waits for training only for the swap (two pointer writes), never for a step.

The cost is two extra copies of backbone + normaliser in memory (3.2 MB each at the
default model) and one copy of their state per step (1.8 ms per ``publish`` on this
project's 2-core CPU, against a step of ~700 ms). Embeddings lag training by at most one
step; each ``EmbeddingFrame.model_step`` says which step's weights made it.
"""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from streamssl.learning.device import autocast
from streamssl.learning.features import LogMel, Normaliser
from streamssl.learning.models import Backbone, BackboneState
from streamssl.learning.readout import pool, readout_dim


class Embedder:
    """Normaliser + backbone + readout, no grad; ``step`` is the optimizer step its weights come from."""

    def __init__(self, logmel: LogMel, normaliser: Normaliser, backbone: Backbone, device: torch.device, step: int = 0):
        self.logmel = logmel
        self.normaliser = normaliser
        self.backbone = backbone
        self.device = device
        self.step = step

    @property
    def dim(self) -> int:
        return readout_dim(self.backbone.z_dim, self.backbone.dim)

    @torch.no_grad()
    def embed_frames(
        self, mel: torch.Tensor, states: list[BackboneState]
    ) -> tuple[torch.Tensor, torch.Tensor, list[BackboneState]]:
        """Raw log-mel (G, T, F) of G streams with equal ``batch_key`` -> embeddings (G, dim), c (G, T, frame_dim), new states."""
        state = self.backbone.stack_states(states, like=mel)
        with autocast(self.device):
            z, c, state = self.backbone(self.normaliser(mel), state)
        return pool(z, c, mel), c.float(), self.backbone.split_state(state)

    @torch.no_grad()
    def embed_clips(self, audio: torch.Tensor) -> torch.Tensor:
        """(n, S) audio, each clip from a fresh state -> embeddings (n, dim)."""
        mel = self.logmel(audio)
        if mel.shape[1] == 0:
            return audio.new_zeros(audio.shape[0], self.dim)
        with autocast(self.device):
            z, c, _ = self.backbone(self.normaliser(mel))
        return pool(z, c, mel)


def _frozen(module: nn.Module) -> nn.Module:
    out = copy.deepcopy(module).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


class ServingWeights:
    """Double-buffered inference weights (module docstring): ``use()`` to embed, ``publish()`` after a step."""

    def __init__(self, source: Embedder):
        self._lock = threading.Lock()
        self._front = self._copy(source)
        self._back = self._copy(source)

    @staticmethod
    def _copy(source: Embedder) -> Embedder:
        return Embedder(source.logmel, _frozen(source.normaliser), _frozen(source.backbone), source.device, source.step)

    @property
    def step(self) -> int:
        return self._front.step

    def publish(self, source: Embedder) -> None:
        """Copy ``source``'s weights into the back buffer, then make it the front (training thread)."""
        back = self._back
        back.normaliser.load_state_dict(source.normaliser.state_dict())
        back.backbone.load_state_dict(source.backbone.state_dict())
        back.step = source.step
        with self._lock:
            self._front, self._back = back, self._front

    @contextmanager
    def use(self) -> Iterator[Embedder]:
        """The front weights, held still for the duration of the block."""
        with self._lock:
            yield self._front
