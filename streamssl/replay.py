"""Replay: a bounded memory of recent training examples mixed into every update.

One step per arriving window would otherwise fit the model to the last second of audio
only; mixing in older examples keeps each step's gradient closer to the stream's
distribution. FIFO keeps the most recent ``size`` examples (tracks drift); reservoir
keeps a uniform sample of everything seen (Vitter's algorithm R; resists forgetting).
Audio is stored as float16: half the memory, far below the model's own noise.
"""

from __future__ import annotations

import torch


class Replay:
    """Examples (S samples each) with their stream hash and capture time."""

    def __init__(self, size: int, samples: int, policy: str, generator: torch.Generator):
        self.size = size
        self.policy = policy
        self.generator = generator
        self.audio = torch.zeros(size, samples, dtype=torch.float16)
        self.stream = torch.zeros(size, dtype=torch.long)
        self.time = torch.zeros(size, dtype=torch.float64)
        self.count = 0  # filled slots
        self.seen = 0  # examples ever offered (reservoir)
        self.ptr = 0  # next FIFO slot

    def __len__(self) -> int:
        return self.count

    def add(self, audio: torch.Tensor, stream: torch.Tensor, time_s: torch.Tensor) -> None:
        for i in range(audio.shape[0]):
            self.seen += 1
            if self.size == 0:
                return
            if self.policy == "fifo":
                slot = self.ptr
                self.ptr = (self.ptr + 1) % self.size
            elif self.count < self.size:
                slot = self.count
            else:
                j = int(torch.randint(0, self.seen, (1,), generator=self.generator))
                if j >= self.size:
                    continue
                slot = j
            self.audio[slot] = audio[i].detach().to("cpu", torch.float16)
            self.stream[slot] = stream[i]
            self.time[slot] = time_s[i]
            self.count = min(self.count + 1, self.size)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """n examples drawn uniformly (with replacement) from the filled slots."""
        n = min(n, self.count)
        idx = torch.randint(0, max(self.count, 1), (n,), generator=self.generator)
        return self.audio[idx].float(), self.stream[idx], self.time[idx]

    def state_dict(self) -> dict:
        return {"audio": self.audio, "stream": self.stream, "time": self.time, "count": self.count,
                "seen": self.seen, "ptr": self.ptr}

    def load_state_dict(self, sd: dict) -> None:
        self.audio, self.stream, self.time = sd["audio"].clone(), sd["stream"].clone(), sd["time"].clone()
        self.count, self.seen, self.ptr = int(sd["count"]), int(sd["seen"]), int(sd["ptr"])
