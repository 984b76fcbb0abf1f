"""The learner's front door: validate, account for sequence gaps, bound the backlog.

Everything that can go wrong with input is decided here, before the model sees a
window: malformed messages are rejected with a counted reason, a stream's ``seq`` gaps
are counted once per gap with the number of windows missing, a capture restart (new
``session``) starts the stream afresh instead of reading as a gap storm, stale or
duplicate windows are rejected, and when the learner falls behind the oldest queued
windows are shed (counted) so that the newest audio is learned and embedded.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from streamssl import wire
from streamssl.observability.metrics import LearnerMetrics
from streamssl.wire import AudioWindow, Reason, WireError

log = logging.getLogger(__name__)

# Rejections decided by the intake, beside the wire format's own reasons.
STALE = "stale_seq"
REJECT_REASONS = tuple(r.value for r in Reason) + (STALE,)


@dataclass
class StreamState:
    session: int
    last_seq: int


class Intake:
    """Turns raw multipart messages into an ordered, bounded backlog of AudioWindows.

    ``on_new_session(stream_id)`` is called when a stream (re)starts, so the learner can
    drop that stream's streaming state.
    """

    def __init__(
        self, metrics: LearnerMetrics, max_backlog: int, on_new_session: Callable[[str], None] = lambda sid: None
    ):
        self.metrics = metrics
        self.max_backlog = max_backlog
        self.on_new_session = on_new_session
        self.backlog: collections.deque[AudioWindow] = collections.deque()
        self.streams: dict[str, StreamState] = {}
        for reason in REJECT_REASONS:  # series exist at 0 so dashboards and alerts have data
            metrics.rejected.labels(reason)

    def offer(self, frames: Sequence) -> AudioWindow | None:
        """Validate one message and queue it; returns the window or None if rejected."""
        try:
            window = wire.decode_audio(frames)
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
        if state is None or state.session != w.session:
            if state is None:
                for counter in (m.seq_gaps, m.missing_windows, m.shed, m.embeddings_published):
                    counter.labels(w.stream_id)
            else:
                log.info("stream %r: new capture session (seq restarts at %d)", w.stream_id, w.seq)
            m.sessions.labels(w.stream_id).inc()
            self.streams[w.stream_id] = StreamState(w.session, w.seq)
            self.on_new_session(w.stream_id)
            return True
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

    def take(self, limit: int) -> list[AudioWindow]:
        """Up to ``limit`` oldest windows: everything that queued during the last step forms one batch."""
        n = min(limit, len(self.backlog))
        batch = [self.backlog.popleft() for _ in range(n)]
        self.metrics.backlog.set(len(self.backlog))
        return batch

    def state_dict(self) -> dict:
        return {sid: [s.session, s.last_seq] for sid, s in self.streams.items()}

    def load_state_dict(self, sd: dict) -> None:
        self.streams = {sid: StreamState(int(v[0]), int(v[1])) for sid, v in sd.items()}
