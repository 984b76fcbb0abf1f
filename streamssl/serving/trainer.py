"""The training thread of the learner daemon: steps run here, so serving never waits for one.

The daemon's loop receives, embeds and publishes every window on its own thread, then
``submit``s the prepared windows here. This thread takes everything submitted since its
last step, runs one ``OnlineLearner.update`` on it (a larger backlog is learned from a
sample of ``learn_at_most``, exactly as on one thread) and publishes the new weights to
serving (``OnlineLearner.publish_weights``). Windows that pile up while a step runs are
bounded by ``max_pending``: beyond it the oldest are left out of training (counted as
untrained; they were already served).

With ``idle_replay`` > 0 (``learner.idle_replay``, off by default), while no window waits
the thread spends its idle time on replay-only steps (``OnlineLearner.replay_update``), at
most ``idle_replay`` of them per window learned: in the first minutes the probe is limited
by steps, not by new audio (``bench/RESULTS.md``, "Steps, not audio"). The allowance is
capped at ``idle_replay x learn_at_most`` steps, so a learner that stayed busy for an hour
does not then spend minutes on the last few minutes of audio when its streams fall quiet,
and a quiet learner stops stepping soon after its last window. A window that arrives
waits at most for the replay step in progress.

``lock`` is held for the whole of a step. ``between_steps(fn)`` runs ``fn`` on this thread
before the next step and hands back its result as a ``Future``: the daemon's periodic
checkpoint copies the training state that way, between two steps, without its own thread
ever waiting for a step to end.
Step results go back to the daemon's thread through ``results`` (the daemon owns the
metrics and the drift monitor); an exception in a step ends this thread and is re-raised
on the daemon's thread by ``check``, as it would be on one thread.

In a learner group (``group``, ``streamssl.learning.distributed``) the thread ticks in
lockstep with the other ranks instead of waiting for windows: every ``TICK_S`` (or as
soon as windows wait) it all-reduces how many new windows each rank has; all ranks step
when any has some, none when none has. A stop on any rank stops every rank's thread at
the same tick (``group_stopped``), so none is left in a collective.
"""

from __future__ import annotations

import collections
from concurrent.futures import Future
import logging
import os
import queue
import threading
from typing import Any, Callable

from streamssl.learning.learner import OnlineLearner, StepStats
from streamssl.learning.stream import PreparedWindow

log = logging.getLogger(__name__)

NICER_BY = 10  # nice levels below the serving loop: ~1/10 of its CPU share when both are runnable


class Trainer(threading.Thread):
    def __init__(self, learner: OnlineLearner, learn_at_most: int, max_pending: int, group=None,
                 idle_replay: float = 0.0):
        super().__init__(daemon=True, name="trainer")
        self.idle_replay = 0.0 if group is not None else idle_replay  # a group steps in lockstep, on new windows
        self.replay_allowance = 0.0  # replay-only steps earned by windows learned, not yet taken
        self._allowance_cap = max(1.0, self.idle_replay * learn_at_most)
        self.group = group
        self.group_stopped = False  # another rank stopped the group
        self.learner = learner
        self.learn_at_most = learn_at_most
        self.max_pending = max_pending
        self.lock = threading.Lock()
        self.results: queue.SimpleQueue[tuple[StepStats, list[PreparedWindow]]] = queue.SimpleQueue()
        self.dropped: queue.SimpleQueue[str] = queue.SimpleQueue()  # stream ids left out of training while pending
        self._pending: collections.deque[PreparedWindow] = collections.deque()
        self._calls: list[tuple[Callable[[], Any], Future]] = []
        self._wake = threading.Condition()
        self._stopping = False
        self.error: BaseException | None = None

    def submit(self, prepared: list[PreparedWindow]) -> None:
        with self._wake:
            self._pending.extend(prepared)
            while len(self._pending) > self.max_pending:
                self.dropped.put(self._pending.popleft().window.stream_id)
            self._wake.notify()

    @property
    def pending(self) -> int:
        """Windows submitted and not yet taken into a step."""
        with self._wake:
            return len(self._pending)

    def between_steps(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on this thread before the next step (at once if idle); its result or exception
        goes to the returned Future, which is cancelled if the thread stops first."""
        future: Future = Future()
        with self._wake:
            if self._stopping or not self.is_alive():
                future.cancel()
                return future
            self._calls.append((fn, future))
            self._wake.notify()
        return future

    def run(self) -> None:
        lower_thread_priority()
        try:
            if self.group is not None:
                self._run_in_group()
                return
            while True:
                with self._wake:
                    while not self._pending and not self._calls and not self._stopping and self.replay_allowance < 1:
                        self._wake.wait()
                    if self._stopping:
                        return
                    calls, self._calls = self._calls, []
                    batch = list(self._pending)
                    self._pending.clear()
                with self.lock:
                    for fn, future in calls:
                        _run_into(fn, future)
                    if batch:
                        stats = self.learner.update(batch, learn_at_most=self.learn_at_most)
                        self.replay_allowance = min(self._allowance_cap,
                                                    self.replay_allowance + self.idle_replay * stats.new_windows)
                    elif calls:
                        continue
                    else:  # idle, with replay steps allowed
                        stats = self.learner.replay_update()
                        if stats is None:  # the buffer is not yet a batch: nothing to take the time for
                            self.replay_allowance = 0.0
                            continue
                        self.replay_allowance -= 1.0
                    self.learner.publish_weights()
                self.results.put((stats, batch))
        except BaseException as exc:  # noqa: BLE001 - handed to the daemon's thread
            log.exception("training step failed")
            self.error = exc
        finally:
            with self._wake:
                for _, future in self._calls:
                    future.cancel()
                self._calls = []

    def _run_in_group(self) -> None:
        from streamssl.learning.distributed import TICK_S

        while True:
            with self._wake:
                if not self._pending and not self._calls and not self._stopping:
                    self._wake.wait(TICK_S)
                calls, self._calls = self._calls, []
                batch = list(self._pending)
                self._pending.clear()
                stopping = self._stopping
            with self.lock:
                for fn, future in calls:
                    _run_into(fn, future)
            tick = self.group.tick(len(batch), stopping)
            if tick.stop:
                self.group_stopped = not stopping
                for p in batch:  # served, never learned
                    self.dropped.put(p.window.stream_id)
                return
            if tick.new == 0:
                continue
            with self.lock:
                stats = self.learner.update(batch, learn_at_most=self.learn_at_most)
                self.learner.publish_weights()
            self.results.put((stats, batch))

    def check(self) -> None:
        """Re-raise a step's exception on the caller's thread."""
        if self.error is not None:
            raise RuntimeError(f"training thread failed: {self.error!r}") from self.error

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the step in progress (if any) and end; windows still pending are not learned."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self.is_alive():
            self.join(timeout)


def _run_into(fn: Callable[[], Any], future: Future) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn())
    except Exception as exc:  # noqa: BLE001 - the caller's to handle
        future.set_exception(exc)


def lower_thread_priority(by: int = NICER_BY) -> None:
    """Make the calling thread nicer than the serving loop (Linux schedules threads by their own
    nice value), so that when both want a core, embedding a window goes first."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except (AttributeError, OSError) as exc:  # not Linux, or not permitted: only latency suffers
        log.info("%s keeps its priority: %s", threading.current_thread().name, exc)
