"""One scalar drift signal: warm-up standardisation, then ADWIN and Page-Hinkley on z-scores.

Why standardise first is explained in ``drift.py``'s docstring; this module holds only
the mechanics, so that the monitor reads as "which signals, fed from where".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from river import drift, stats

from streamssl.config import DriftConfig

# Page-Hinkley keeps its cumulative sums without forgetting. river's default alpha (1 - 1e-4)
# fades them, so on stationary input a sum settles at (mean - delta) / (1 - alpha) and then
# wanders around it with a standard deviation of about sigma / sqrt(2 (1 - alpha)) = 70 sigma,
# far above the 10-sigma threshold: after ~1 / (1 - alpha) observations (10 000 = 5 minutes of
# 16 streams' embeddings, 83 minutes of one stream's windows) it fired on noise, again and
# again (every ~5 minutes in the 30-minute soaks; a replay of the recorded embeddings gives
# the same 2 detections in 15 minutes with the default and none with 1.0, bench/drift_replay.py).
PH_ALPHA = 1.0

# Standardisation floors, in each statistic's own unit: below these a warm-up spread is
# noise of the measurement, not of the signal.
FLOORS = {
    "input_log_energy": 1.0,  # dB
    "input_centroid": 50.0,  # Hz
    "input_high_band": 1.0,  # dB
    "embedding": 0.01,  # distance relative to its running mean
    "loss": 0.01,  # ratio to the running mean
}


class Channel:
    """One scalar signal: warm-up standardisation, then ADWIN and Page-Hinkley on z-scores."""

    def __init__(self, name: str, cfg: DriftConfig, floor: float):
        self.name = name
        self.floor = floor
        self.cfg = cfg
        # Per-stream input statistics of speech are bimodal (talk, pause): a run of pauses is
        # no drift, and needs a higher alarm level than the smooth embedding and loss ratios.
        self.ph_threshold = cfg.input_ph_threshold if name.startswith("input") else cfg.ph_threshold
        self._warm: list[float] = []  # raw values until the scale is fixed
        self.mean: float | None = None
        self.std: float | None = None
        self._detectors = self._make_detectors()

    def _make_detectors(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "adwin": drift.ADWIN(delta=c.adwin_delta, clock=c.adwin_clock),
            "page_hinkley": drift.PageHinkley(delta=c.ph_delta, threshold=self.ph_threshold, mode="both", alpha=PH_ALPHA),
        }

    @property
    def warming(self) -> bool:
        return self.mean is None

    def observe(self, value: float, warmup: int | None = None) -> tuple[float | None, list[str]]:
        """Feed one raw value; returns (z-score or None during warm-up, detectors that fired).

        ``warmup``: observations that fix the scale (default ``cfg.warmup``); the monitor
        scales it with the number of streams feeding the signal."""
        if not math.isfinite(value):
            return None, []
        if self.mean is None:
            self._warm.append(value)
            if len(self._warm) >= (warmup or self.cfg.warmup):
                self._fix_scale()
            return None, []
        z = (value - self.mean) / self.std
        fired = []
        for name, det in self._detectors.items():
            det.update(z)
            if det.drift_detected:
                fired.append(name)
        return z, fired

    def _fix_scale(self) -> None:
        var = stats.Var()
        for v in self._warm:
            var.update(v)
        self.mean = float(np.mean(self._warm))
        self.std = max(math.sqrt(max(var.get(), 0.0)), self.floor)
        self._warm = []

    def state_dict(self) -> dict:
        return {"warm": list(self._warm), "mean": self.mean, "std": self.std}

    def load_state_dict(self, sd: dict) -> None:
        self._warm = [float(v) for v in sd.get("warm", [])]
        self.mean = None if sd.get("mean") is None else float(sd["mean"])
        self.std = None if sd.get("std") is None else float(sd["std"])
        self._detectors = self._make_detectors()
