"""The learner daemon's checkpoints, written so that serving never waits for one.

Writing a checkpoint of the default model serialises ~60 MB (weights, Adam moments, the
replay buffer) and fsyncs it: ~0.5 s on the reference CPU. Done on the serving loop,
behind the training thread's lock (up to a whole step), it stalled every window for
~1 s at each interval (the 30-minute soak's p99 went to 1.3 s then). So a periodic
checkpoint runs in three stages, none of which blocks the serving loop for a step:

1. the training thread copies the training state (``OnlineLearner.training_state``:
   weights, optimizer, replay, each stream's history) between two steps
   (``Trainer.between_steps``; tens of ms, on its own thread);
2. when that copy is ready, the serving loop copies its own half (each stream's STFT carry
   and backbone state, the intake's sequence numbers, the probe set, the drift state):
   a few ms;
3. a writer thread, at low priority, serialises, hashes and writes the joined copy
   (``checkpoint.write``: atomic, fsynced).

The copies are taken in that order, so windows served between 1 and 2 are in the
streaming state but not in the history: on resume they count as windows that were served
and not learned from, never as windows learned twice. The final checkpoint (on SIGTERM,
after the training thread has stopped) and ``save_now`` are synchronous and exact.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from streamssl.learning import checkpoint
from streamssl.learning.learner import OnlineLearner
from streamssl.observability.metrics import LearnerMetrics
from streamssl.serving.trainer import Trainer, lower_thread_priority

log = logging.getLogger(__name__)


class Checkpointer:
    """Every ``interval_s``, a checkpoint of ``learner`` plus ``extras()`` in ``directory``."""

    def __init__(self, learner: OnlineLearner, directory: Path, keep: int, interval_s: float,
                 metrics: LearnerMetrics, extras: Callable[[], dict], trainer: Trainer | None = None):
        self.learner = learner
        self.directory = directory
        self.keep = keep
        self.interval_s = interval_s
        self.metrics = metrics
        self.extras = extras
        self.trainer = trainer
        self._last = time.monotonic()
        self._training: Future | None = None  # stage 1 in flight
        self._writing: Future | None = None  # stage 3 in flight
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="checkpoint", initializer=lower_thread_priority)

    @property
    def busy(self) -> bool:
        return self._training is not None or self._writing is not None

    def poll(self, now: float) -> None:
        """Advance the checkpoint in flight, or start one when the interval has passed (serving loop)."""
        if self._training is not None and self._training.done():
            training, self._training = self._training, None
            if training.cancelled():  # the training thread stopped; the final checkpoint follows
                return
            if training.exception() is not None:
                self._failed(training.exception())
                return
            state = self._payload(training.result())
            self._writing = self._writer.submit(checkpoint.write, state, self.directory, self.keep)
        if self._writing is not None and self._writing.done():
            writing, self._writing = self._writing, None
            if writing.exception() is not None:
                self._failed(writing.exception())
            else:
                self._written(writing.result())
        if not self.busy and now - self._last >= self.interval_s:
            self._last = now
            if self.trainer is not None and self.trainer.is_alive():
                self._training = self.trainer.between_steps(self.learner.training_state)
            else:  # one thread does everything: the training state is not changing now
                self._training = Future()
                self._training.set_result(self.learner.training_state())

    def save_now(self) -> Path | None:
        """Write a checkpoint synchronously (shutdown, tests); a failure is counted and logged, never fatal."""
        self._last = time.monotonic()
        if self._training is not None:  # superseded by this one
            self._training.cancel()
            self._training = None
        if self._writing is not None:  # let a periodic write finish first: checkpoints stay in step order
            self._writing.exception()
            self.poll(self._last)
        with self.trainer.lock if self.trainer is not None else nullcontext():  # between two steps
            training = self.learner.training_state()
        try:
            path = checkpoint.write(self._payload(training), self.directory, self.keep)
        except (OSError, checkpoint.CheckpointError) as exc:
            self._failed(exc)
            return None
        self._written(path)
        return path

    def close(self) -> None:
        self._writer.shutdown(wait=True)

    def _payload(self, training: dict) -> dict:
        serving = self.learner.serving_state()
        return checkpoint.payload(OnlineLearner.join_state(training, serving), checkpoint.copied(self.extras()))

    def _failed(self, exc: BaseException) -> None:
        self.metrics.checkpoint_errors.inc()
        log.error("checkpoint failed, previous one kept: %s", exc)

    def _written(self, path: Path) -> None:
        self.metrics.checkpoint_timestamp.set(time.time())
        log.info("checkpoint %s", path.name)
