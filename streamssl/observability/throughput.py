"""The learner's real-time factor: audio seconds learned per busy second, over a sliding minute.

Above 1 the learner keeps up with its streams; below 1 it falls behind and the intake
starts shedding. Busy time is the embed-and-learn time of each batch, not wall time, so
an idle learner waiting for audio does not read as slow.
"""

from __future__ import annotations

import collections
import time

RTF_WINDOW_S = 60.0


class RealtimeFactor:
    """Sliding-window ratio of audio seconds to busy seconds (``value``; 0 before any batch)."""

    def __init__(self, window_s: float = RTF_WINDOW_S):
        self.window_s = window_s
        self._log: collections.deque[tuple[float, float, float]] = collections.deque()
        self.value = 0.0

    def observe(self, audio_s: float, busy_s: float, now: float | None = None) -> float:
        """One batch: its audio length and the time spent on it; returns the current factor."""
        now = time.monotonic() if now is None else now
        self._log.append((now, audio_s, busy_s))
        while self._log and self._log[0][0] < now - self.window_s:
            self._log.popleft()
        busy = sum(b for _, _, b in self._log)
        if busy > 0:
            self.value = sum(a for _, a, _ in self._log) / busy
        return self.value

    @property
    def audio_seconds(self) -> float:
        """Audio seconds learned within the window."""
        return sum(a for _, a, _ in self._log)
