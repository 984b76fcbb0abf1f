"""``streamssl events``: subscribe to embeddings, cluster them online, say what each window is.

One ``EventClusterer`` for every stream subscribed to, so a cluster id names the same
kind of sound on every stream; novelty runs are counted per stream. Per embedding: one
``SoundEvent`` to stdout or a JSONL file (``SoundEvent.record``), to a PUB socket with
``--publish`` (``wire.encode_event``, topic = stream id, same CURVE and loopback rules as
the daemons) and into the metrics (``EventsMetrics``).

State: with ``--checkpoint-dir`` the clusterer is written every
``events.checkpoint_interval_s`` and on SIGTERM, as JSON in a digest envelope through the
learner's atomic write (temp file, fsync, rename), and resumed at start; a damaged file is
refused with its reason and the previous one used. Embeddings of another model
(``ModelChanged``: another size, or a model step lower than one already seen) make it start
over: counted in ``streamssl_events_resets_total`` and logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import IO

import zmq

from streamssl import wire
from streamssl.config import Config
from streamssl.events.clusterer import EventClusterer, ModelChanged
from streamssl.atomic import atomic_write
from streamssl.learning.checkpoint import newest_loadable, prune
from streamssl.observability.metrics import EventsMetrics, serve
from streamssl.serving.subscriber import subscribe
from streamssl.transport import make_socket

log = logging.getLogger(__name__)

STATE_FORMAT = 1
STATE_PATTERN = "events-*.json"
KEEP = 3
POLL_S = 0.5  # how often the loop looks at the stop flag and the checkpoint clock while no embedding arrives


class EventsService:
    """Subscribe, cluster, emit; ``run()`` until ``stop()`` or ``max_windows``."""

    def __init__(self, cfg: Config, endpoint: str, streams: tuple[str, ...] = (), publish: str | None = None,
                 out: IO[str] | None = None, metrics_port: int = 0, checkpoint_dir: str | Path | None = None,
                 metrics: EventsMetrics | None = None):
        self.cfg = cfg
        self.endpoint = endpoint
        self.streams = streams
        self.publish = publish
        self.out = out if out is not None else sys.stdout
        self.metrics_port = metrics_port
        self.metrics = metrics or EventsMetrics()
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.clusterer: EventClusterer | None = None
        self._write_failed = False  # the first failed event write is logged, every one counted
        self._stop = threading.Event()
        self._last_checkpoint = time.monotonic()
        if self.checkpoint_dir:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            self._resume()

    def stop(self, *_: object) -> None:
        self._stop.set()

    # --- per embedding --------------------------------------------------------------

    def handle(self, frame: wire.EmbeddingFrame) -> wire.SoundEvent:
        """Cluster one embedding; returns the event (the loop emits it)."""
        if self.clusterer is None:
            self.clusterer = EventClusterer(self.cfg.events, frame.dim)
        try:
            a = self.clusterer.observe(frame.stream_id, frame.embedding, frame.model_step, frame.session)
        except ModelChanged as exc:
            self.metrics.resets.inc()
            log.warning("clusters start over: %s", exc)
            self.clusterer = EventClusterer(self.cfg.events, frame.dim)
            a = self.clusterer.observe(frame.stream_id, frame.embedding, frame.model_step, frame.session)
        m = self.metrics
        m.windows.labels(frame.stream_id).inc()
        m.novel.labels(frame.stream_id)  # the stream's series exists (at 0) before its first novelty
        if a.novel:
            m.novel.labels(frame.stream_id).inc()
            log.info("novel sound on %s at seq %d (cluster %d)", frame.stream_id, frame.seq, a.cluster)
        if a.established:
            m.new_clusters.inc()
        m.clusters_alive.set(self.clusterer.clusters_alive)
        m.model_step.set(frame.model_step)
        return wire.SoundEvent(frame.stream_id, frame.seq, frame.capture_ns, frame.model_step, a.cluster, a.distance,
                               a.novel, a.established, session=frame.session)

    # --- the loop -------------------------------------------------------------------

    def run(self, max_windows: int | None = None, timeout_s: float | None = None) -> int:
        """Until stopped, ``max_windows`` handled, or no embedding for ``timeout_s`` (then exit 1)."""
        cfg = self.cfg
        ctx = zmq.Context.instance()
        pub = make_socket(ctx, zmq.PUB, cfg.transport, bind=self.publish) if self.publish else None
        server = serve(self.metrics.registry, cfg.learner.metrics_host, self.metrics_port)
        sub = subscribe(self.endpoint, self.streams, timeout=POLL_S, transport=cfg.transport)
        handled, rejected, gaps, quiet_since = 0, 0, 0, time.monotonic()
        log.info("events: embeddings from %s%s, events to %s", self.endpoint,
                 f" (streams {', '.join(self.streams)})" if self.streams else "", self.publish or "stdout/file only")
        code = 0
        try:
            while not self._stop.is_set() and (max_windows is None or handled < max_windows):
                try:
                    frame = next(sub)
                except TimeoutError:
                    if timeout_s is not None and time.monotonic() - quiet_since > timeout_s:
                        log.error("no embedding from %s for %.0f s", self.endpoint, timeout_s)
                        code = 1
                        break
                    self._maybe_checkpoint()
                    continue
                quiet_since = time.monotonic()
                self.metrics.rejected.inc(sub.rejected - rejected)
                self.metrics.gaps.inc(sub.gaps - gaps)
                rejected, gaps = sub.rejected, sub.gaps
                event = self.handle(frame)
                self._write(event)
                if pub is not None:
                    sent = wire.SoundEvent(**{**event.__dict__, "sent_ns": time.time_ns()})
                    pub.send_multipart(wire.encode_event(sent), zmq.NOBLOCK)
                handled += 1
                self._maybe_checkpoint()
        finally:
            self.save_checkpoint()
            sub.close()
            if pub is not None:
                pub.close(cfg.transport.linger_ms)
            if server is not None:
                server[0].shutdown()
        return code

    def _write(self, event: wire.SoundEvent) -> None:
        """One JSON line; a failed write (a full disk, a closed pipe) is counted and logged, and
        the service goes on clustering and publishing."""
        try:
            self.out.write(json.dumps(event.record()) + "\n")
            self.out.flush()
        except OSError as exc:
            self.metrics.write_errors.inc()
            if not self._write_failed:
                self._write_failed = True
                log.error("cannot write events (counted in streamssl_events_write_errors_total): %s", exc)

    # --- state ----------------------------------------------------------------------

    def _maybe_checkpoint(self) -> None:
        if self.checkpoint_dir and time.monotonic() - self._last_checkpoint >= self.cfg.events.checkpoint_interval_s:
            self.save_checkpoint()

    def save_checkpoint(self) -> Path | None:
        """Write the clusterer's state now; a failure is counted and logged, never fatal."""
        self._last_checkpoint = time.monotonic()
        if not self.checkpoint_dir or self.clusterer is None:
            return None
        state = json.dumps(self.clusterer.state_dict(), allow_nan=True)
        envelope = {"format": STATE_FORMAT, "sha256": hashlib.sha256(state.encode()).hexdigest(), "state": state}
        path = self.checkpoint_dir / f"events-{time.time_ns():020d}.json"
        data = json.dumps(envelope).encode()
        try:
            atomic_write(path, lambda f: f.write(data))
        except OSError as exc:
            self.metrics.checkpoint_errors.inc()
            log.error("events checkpoint failed, previous one kept: %s", exc)
            return None
        prune(self.checkpoint_dir, STATE_PATTERN, KEEP)
        return path

    def _resume(self) -> None:
        found = newest_loadable(self.checkpoint_dir, STATE_PATTERN, load_state, ValueError)
        if found is None:
            return
        path, state = found
        self.clusterer = EventClusterer(self.cfg.events, int(state["dim"]))
        self.clusterer.load_state_dict(state)
        log.info("resumed %d clusters from %s", self.clusterer.clusters_alive, path.name)


def load_state(path: Path) -> dict:
    """A clusterer state written by ``save_checkpoint``; ``ValueError`` says why one is refused."""
    try:
        envelope = json.loads(path.read_text())
        state = envelope["state"]
        ok = envelope["format"] == STATE_FORMAT
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable events checkpoint ({type(exc).__name__}: {exc})") from None
    if not ok:
        raise ValueError(f"{path}: events checkpoint format {envelope['format']}, this build reads {STATE_FORMAT}")
    if hashlib.sha256(state.encode()).hexdigest() != envelope.get("sha256"):
        raise ValueError(f"{path}: corrupted (SHA-256 does not match the one written)")
    return json.loads(state)
