"""The drift probe set: the first windows a learner hears, kept to be re-embedded later.

Representation drift is measured on fixed input (``DriftMonitor.check_probe``): the
same windows embedded at step 50, 100, ... show how the model's geometry moves. The
set fills from the first ``drift.probe_size`` windows at the feature rate (others would
need resampling and would not be the same input twice), is saved in checkpoints as
tensors, and is restored on resume so the comparison continues across restarts.
"""

from __future__ import annotations

import numpy as np


class ProbeSet:
    def __init__(self, size: int, sample_rate: int):
        self.size = size
        self.sample_rate = sample_rate
        self.windows: list[np.ndarray] = []

    def __bool__(self) -> bool:
        return bool(self.windows)

    def __len__(self) -> int:
        return len(self.windows)

    def offer(self, window) -> None:
        """Keep an AudioWindow's mono samples while the set is not full and the rate matches."""
        if len(self.windows) < self.size and window.sample_rate == self.sample_rate:
            self.windows.append(window.mono_float().copy())

    def array(self) -> np.ndarray:
        """(n, samples) float32, every window cut to the shortest."""
        n = min(len(p) for p in self.windows)
        return np.stack([p[:n] for p in self.windows]).astype(np.float32)

    def state(self) -> list:
        """For the checkpoint: a list of tensors (loads with ``weights_only=True``)."""
        import torch

        return [torch.from_numpy(p) for p in self.windows]

    def load(self, saved: list) -> None:
        self.windows = [p.numpy() if hasattr(p, "numpy") else np.asarray(p) for p in saved]
