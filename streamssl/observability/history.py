"""A run's history on disk: one JSON line per second of learning.

The learner daemon appends to ``<checkpoint_dir>/metrics.jsonl``; ``streamssl report``
and the demo plot it (``report.py``). JSON lines, not a database: appendable by one
writer, readable while it grows, and a torn last line (crash mid-write) is skipped,
not fatal. ``HistoryRecorder`` is what the daemon calls: it averages the losses of the
steps in between and writes one record per ``every_s`` seconds.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

HISTORY_EVERY_S = 1.0


class History:
    """Append-only JSON-lines log of learning progress; one record per call.

    The file is opened for each record (once a second), not held: a directory that is or
    becomes read-only or full costs the records it cannot take, logged once until writes
    succeed again, and never stops the learner.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._failing = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only or full: append() will say so and carry on
            log.error("history %s: %s", self.path, exc)

    def append(self, record: dict) -> None:
        """Write ``record`` as one line; NaN/Inf become null (strict JSON)."""
        try:
            line = json.dumps(_finite(record), allow_nan=False) + "\n"
            with self.path.open("a") as f:
                f.write(line)
            self._failing = False
        except (OSError, TypeError, ValueError) as exc:  # a full disk or odd value must not stop learning
            if not self._failing:
                log.error("history %s: %s (records are dropped until writes succeed)", self.path, exc)
            self._failing = True

    def close(self) -> None:
        """Nothing is held open; kept so callers need not know."""

    @staticmethod
    def read(path: str | Path) -> list[dict]:
        """Every complete record in the file, in order."""
        records = []
        for line in Path(path).read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # torn line from an interrupted write
        return records


class HistoryRecorder:
    """Collects per-step losses and writes one averaged record every ``every_s`` seconds."""

    def __init__(self, path: str | Path, every_s: float = HISTORY_EVERY_S):
        self.history = History(path)
        self.every_s = every_s
        self._losses: dict[str, list[float]] = collections.defaultdict(list)
        self._last = time.monotonic()

    def add_losses(self, losses: dict[str, float]) -> None:
        for name, value in losses.items():
            self._losses[name].append(value)

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return bool(self._losses) and now - self._last >= self.every_s

    def write(self, step: int, rtf: float, audio_seconds: float, cka: dict, detections: list[str]) -> None:
        """One record: mean loss per objective since the last one, plus the given readings."""
        self.history.append({
            "time": time.time(),
            "step": step,
            "losses": {k: float(np.mean(v)) for k, v in self._losses.items()},
            "rtf": rtf,
            "audio_seconds": audio_seconds,
            "cka_previous": cka.get("previous"),
            "cka_initial": cka.get("initial"),
            "detections": detections,
        })
        self._losses.clear()
        self._last = time.monotonic()


def _finite(value):
    """``value`` with NaN/Inf floats replaced by None and numpy scalars made plain, recursively."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy / torch scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
