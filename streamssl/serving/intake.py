"""The learner's front door: validate, account for sequence gaps, bound the backlog.

Everything that can go wrong with input is decided here, before the model sees a
window: malformed messages are rejected with a counted reason, a stream's ``seq`` gaps
are counted once per gap with the number of windows missing, a capture restart (new
``session``) starts the stream afresh instead of reading as a gap storm, stale or
duplicate windows are rejected, and when the learner falls behind the oldest queued
windows are shed (counted) so that the newest audio is learned and embedded.

State per stream is bounded: at most ``max_streams`` streams are held; a new stream
beyond that evicts the least recently active one (reason ``capacity``), and a stream
silent for ``idle_s`` is evicted by ``expire_idle`` (reason ``idle``). Eviction drops the
stream's sequence state here, its labelled metric series, and (through ``on_evict``) the
learner's state for it; a stream that comes back starts afresh, like a new session.
Without this, captures that restart under new ids (per-session names, a fleet of phones)
grow the learner's memory for as long as it lives.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from streamssl import wire
from streamssl.observability.metrics import LearnerMetrics
from streamssl.wire import AudioWindow, Reason, WireError

log = logging.getLogger(__name__)

# Rejections decided by the intake, beside the wire format's own reasons.
STALE = "stale_seq"
REJECT_REASONS = tuple(r.value for r in Reason) + (STALE,)


EVICT_REASONS = ("capacity", "idle")


@dataclass
class StreamState:
    session: int
    last_seq: int
    last_active: float  # time.monotonic() of its last accepted window


class Intake:
    """Turns raw multipart messages into an ordered, bounded backlog of AudioWindows.

    ``on_new_session(stream_id)`` is called when a stream (re)starts, so the learner can
    drop that stream's streaming state.
    """

    def __init__(
        self, metrics: LearnerMetrics, max_backlog: int, on_new_session: Callable[[str], None] = lambda sid: None,
        *, max_streams: int = 256, idle_s: float = 0.0, on_evict: Callable[[str], None] = lambda sid: None,
        clock: Callable[[], float] = time.monotonic, max_message_bytes: int | None = None,
    ):
        self.metrics = metrics
        self.max_backlog = max_backlog
        self.on_new_session = on_new_session
        self.max_streams = max_streams
        self.idle_s = idle_s
        self.on_evict = on_evict
        self._clock = clock
        self.max_message_bytes = max_message_bytes
        self.backlog: collections.deque[AudioWindow] = collections.deque()
        self.streams: collections.OrderedDict[str, StreamState] = collections.OrderedDict()  # least recently active first
        for reason in REJECT_REASONS:  # series exist at 0 so dashboards and alerts have data
            metrics.rejected.labels(reason)
        for reason in EVICT_REASONS:
            metrics.streams_evicted.labels(reason)
        metrics.active_streams.set(0)

    def offer(self, frames: Sequence) -> AudioWindow | None:
        """Validate one message and queue it; returns the window or None if rejected."""
        try:
            window = wire.decode_audio(frames, self.max_message_bytes)
        except WireError as exc:
            self.metrics.rejected.labels(exc.reason.value).inc()
            log.warning("rejected audio message: %s", exc)
            return None
        if not self._in_sequence(window):
            self.metrics.rejected.labels(STALE).inc()
            return None
        m = self.metrics
        m.windows_received.labels(window.stream_id).inc()
        m.audio_seconds.labels(window.stream_id).inc(window.duration_s)
        self.backlog.append(window)
        while len(self.backlog) > self.max_backlog:
            shed = self.backlog.popleft()
            m.shed.labels(shed.stream_id).inc()
        m.backlog.set(len(self.backlog))
        return window

    def _in_sequence(self, w: AudioWindow) -> bool:
        state = self.streams.get(w.stream_id)
        m = self.metrics
        now = self._clock()
        if state is None or state.session != w.session:
            if state is None:
                while len(self.streams) >= self.max_streams:
                    self.evict(next(iter(self.streams)), "capacity")
                for counter in (m.seq_gaps, m.missing_windows, m.shed, m.untrained, m.embeddings_published):
                    counter.labels(w.stream_id)
            else:
                log.info("stream %r: new capture session (seq restarts at %d)", w.stream_id, w.seq)
            m.sessions.labels(w.stream_id).inc()
            self.streams[w.stream_id] = StreamState(w.session, w.seq, now)
            self.streams.move_to_end(w.stream_id)
            m.active_streams.set(len(self.streams))
            self.on_new_session(w.stream_id)
            return True
        state.last_active = now
        self.streams.move_to_end(w.stream_id)
        if w.seq <= state.last_seq:
            log.warning("stream %r: seq %d after %d in the same session; rejected", w.stream_id, w.seq, state.last_seq)
            return False
        if w.seq > state.last_seq + 1:
            missing = w.seq - state.last_seq - 1
            m.seq_gaps.labels(w.stream_id).inc()
            m.missing_windows.labels(w.stream_id).inc(missing)
            log.info("stream %r: %d windows missing before seq %d", w.stream_id, missing, w.seq)
        state.last_seq = w.seq
        return True

    def evict(self, stream_id: str, reason: str) -> None:
        """Drop everything held for one stream (module docstring); counted by reason, logged once."""
        if self.streams.pop(stream_id, None) is None:
            return
        self.metrics.streams_evicted.labels(reason).inc()
        self.metrics.forget_stream(stream_id)
        self.metrics.active_streams.set(len(self.streams))
        self.on_evict(stream_id)
        log.info("stream %r evicted (%s); %d streams held", stream_id, reason, len(self.streams))

    def expire_idle(self) -> int:
        """Evict the streams silent for longer than ``idle_s`` (0 = never); returns how many."""
        if self.idle_s <= 0:
            return 0
        deadline = self._clock() - self.idle_s
        idle = [sid for sid, s in self.streams.items() if s.last_active < deadline]
        for sid in idle:
            self.evict(sid, "idle")
        return len(idle)

    def take(self, limit: int) -> list[AudioWindow]:
        """Up to ``limit`` oldest windows: everything that queued during the last step forms one batch."""
        n = min(limit, len(self.backlog))
        batch = [self.backlog.popleft() for _ in range(n)]
        self.metrics.backlog.set(len(self.backlog))
        return batch

    def state_dict(self) -> dict:
        return {sid: [s.session, s.last_seq] for sid, s in self.streams.items()}

    def load_state_dict(self, sd: dict) -> None:
        """Restore sequence state; idle clocks restart at load (the learner was down, not the streams)."""
        now = self._clock()
        self.streams = collections.OrderedDict(
            (sid, StreamState(int(v[0]), int(v[1]), now)) for sid, v in list(sd.items())[-self.max_streams:]
        )
        self.metrics.active_streams.set(len(self.streams))
