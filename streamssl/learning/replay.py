"""Replay buffer of recent training examples, mixed into every online step.

Without replay every step sees only the newest window(s): gradients from one speaker,
one second, and the model forgets what it saw a minute ago. Examples are stored as int16
(the wire's own precision): 1 s at 16 kHz is 32 KB, so the default 512 slots hold 16 MB
instead of 64 MB in float32. Policies: ``fifo`` keeps the newest, ``reservoir``
(Vitter's algorithm R) keeps a uniform sample of everything seen.
"""

from __future__ import annotations

import numpy as np
import torch

from streamssl.wire import pcm16_to_float, to_pcm16


class ReplayBuffer:
    """Fixed-capacity store of (audio, stream hash, capture time) examples."""

    def __init__(self, capacity: int, samples: int, policy: str, rng: np.random.Generator):
        self.capacity = capacity
        self.samples = samples
        self.policy = policy
        self._rng = rng
        self._audio = np.zeros((capacity, samples), dtype=np.int16)
        self._stream = np.zeros(capacity, dtype=np.int64)
        self._time = np.zeros(capacity, dtype=np.int64)
        self._seen = 0

    def __len__(self) -> int:
        return min(self._seen, self.capacity)

    @property
    def nbytes(self) -> int:
        return self._audio.nbytes + self._stream.nbytes + self._time.nbytes

    def add(self, audio: np.ndarray, stream: np.ndarray, time_ns: np.ndarray) -> None:
        """audio: (N, samples) float in [-1, 1]."""
        if self.capacity == 0:
            return
        pcm = to_pcm16(audio)
        for i in range(pcm.shape[0]):
            if self.policy == "fifo" or self._seen < self.capacity:
                slot = self._seen % self.capacity
            else:
                slot = int(self._rng.integers(0, self._seen + 1))
            if slot < self.capacity:
                self._audio[slot], self._stream[slot], self._time[slot] = pcm[i], stream[i], time_ns[i]
            self._seen += 1

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Up to n distinct examples: (n, samples) float32, stream hashes, capture times."""
        k = min(n, len(self))
        idx = np.sort(self._rng.choice(len(self), size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)
        return pcm16_to_float(self._audio[idx]), self._stream[idx], self._time[idx]

    def state_dict(self) -> dict:
        n = len(self)
        return {
            "audio": torch.from_numpy(self._audio[:n].copy()),
            "stream": torch.from_numpy(self._stream[:n].copy()),
            "time": torch.from_numpy(self._time[:n].copy()),
            "seen": self._seen,
        }

    def load_state_dict(self, sd: dict) -> None:
        audio = sd["audio"].numpy()
        n = min(audio.shape[0], self.capacity)
        if audio.shape[0] and audio.shape[1] != self.samples:
            raise ValueError(f"replay examples have {audio.shape[1]} samples, this learner uses {self.samples}")
        self._audio[:n] = audio[:n]
        self._stream[:n] = sd["stream"].numpy()[:n]
        self._time[:n] = sd["time"].numpy()[:n]
        self._seen = int(sd["seen"])
