"""The capture daemon: read a source, stamp windows, push them, never block the audio.

Two threads and one bounded queue::

    source thread: blocks -> AudioWindow(seq, capture_ns, flags) -> queue.put_nowait
    main thread:   queue.get -> stamp sent_ns -> PUSH send (zmq.NOBLOCK)

Every window the source produces gets the next ``seq`` (from 0, per process
``session``), *before* it can be lost, so any loss shows up as a gap at the learner as
well as in ``streamssl_capture_windows_dropped_total{reason}`` here:

- ``device_queue_full``: the microphone callback's queue was full (the block never
  became a window, but its seq is skipped so the gap is visible);
- ``queue_full``: the source outran the sender;
- ``hwm``: the socket's high-water mark was reached (learner absent, restarting or
  slow). PUSH would *block* there; sending with NOBLOCK turns it into a counted drop.

The window after any drop carries ``FLAG_AFTER_DROP``; one containing a device
overrun carries ``FLAG_INPUT_OVERFLOW``.

Live sources (``capture.realtime = true``, and the microphone always) drop rather than
wait. With ``realtime = false`` a file/stdin/ffmpeg/speech/synth source is read "as
fast as consumed": the queue and the socket apply back-pressure instead of dropping,
so offline jobs lose nothing (and wait while no learner is connected).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import zmq

from streamssl import __version__
from streamssl.atomic import atomic_write
from streamssl.config import Config, ConfigError
from streamssl.observability.metrics import CaptureMetrics, serve
from streamssl.capture.sources import Source, SourceError, open_source, parse_spec
from streamssl.transport import make_socket
from streamssl.wire import FLAG_AFTER_DROP, FLAG_INPUT_OVERFLOW, AudioWindow, encode_audio, endpoint_for_stream, to_pcm16
from streamssl.wire import window_frames as wire_window_frames

log = logging.getLogger("streamssl.capture")

DROP_REASONS = ("hwm", "queue_full", "device_queue_full")
# Windows are sent by copy: below pyzmq's zero-copy threshold (64 KiB; a 0.5 s int16
# window is 16 KB) copy=False copies anyway, through a slower path (measured +4 us/message).
SEND_COPY = True
RESTART_BACKOFF_S = 0.5  # first wait before reopening a live source; doubles per failed attempt
RESTART_BACKOFF_MAX_S = 30.0
# An offline (lossless) capture that read its source to the end hands over what its socket
# still holds before it exits. A learner that learns every window (learner.learn_every_window)
# takes them at its training pace, ~30 windows/s on 2 cores: 10 s lost 459 of the last
# windows of a 1-h run (make eval). A capture told to stop waits STOPPED_LINGER_MS at most.
LOSSLESS_LINGER_MS = 300_000
STOPPED_LINGER_MS = 10_000


def window_frames(cfg: Config) -> int:
    """Frames per window of this capture (``wire.window_frames`` of its rate and length)."""
    return wire_window_frames(cfg.capture.sample_rate, cfg.capture.window_ms)


def to_wire_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 [-1, 1] -> the configured wire dtype (int16 by ``wire.to_pcm16``)."""
    if dtype == "float32":
        return np.ascontiguousarray(x, dtype=np.float32)
    return to_pcm16(x)


def source_factory(cfg: Config) -> Callable[[], Source]:
    """A callable that opens the configured source (again, after a failure)."""
    c = cfg.capture
    frames = window_frames(cfg)

    def make() -> Source:
        return open_source(
            c.source, sample_rate=c.sample_rate, channels=c.channels, block_frames=frames,
            realtime=c.realtime, loop=c.loop, seed=c.seed,
        )

    return make


class Capture:
    """One capture daemon. ``run()`` blocks until the source ends, ``max_seconds`` of
    audio were read, or ``stop()`` is called (from a signal handler or another thread)."""

    def __init__(self, cfg: Config, make_source: Callable[[], Source] | None = None,
                 metrics: CaptureMetrics | None = None):
        self.cfg = cfg
        c = cfg.capture
        self.kind, _ = parse_spec(c.source)
        self.make_source = make_source or source_factory(cfg)
        self.source = self.make_source()  # ConfigError here = bad spec/device/tool: exit 2 at start
        self.metrics = metrics or CaptureMetrics()
        self.stream = c.stream_id
        self.session = int.from_bytes(os.urandom(8), "little")
        self.lossless = not c.realtime and self.kind != "mic"
        self.queue: queue.Queue[AudioWindow] = queue.Queue(maxsize=c.queue_windows)
        self.max_frames = int(round(c.max_seconds * c.sample_rate)) if c.max_seconds > 0 else 0
        self._stop = threading.Event()
        self._source_done = threading.Event()
        self.failed: str | None = None
        # plain counters for the exit summary (the Prometheus ones are for scraping)
        self.sent = 0
        self.frames_produced = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.overflows = 0
        self.source_errors = 0
        m = self.metrics
        for reason in DROP_REASONS:
            m.dropped.labels(self.stream, reason)
        for counter in (m.windows_sent, m.bytes_sent, m.audio_seconds, m.overflows, m.source_errors,
                        m.source_gap_seconds):
            counter.labels(self.stream)
        m.up.labels(self.stream).set(0)
        m.queue_depth.labels(self.stream).set(0)
        m.info.info({"version": __version__, "stream": self.stream, "source": self.kind,
                     "sample_rate": str(c.sample_rate), "window_ms": str(c.window_ms), "dtype": c.dtype})

    # --- control ------------------------------------------------------------------

    def stop(self) -> None:
        """Request a clean stop; safe in a signal handler."""
        self._stop.set()
        src = self.source
        if src is not None:
            src.close()

    def _drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n
        self.metrics.dropped.labels(self.stream, reason).inc(n)

    # --- source thread ------------------------------------------------------------

    def _produce(self) -> None:
        """Read blocks, number them, queue them; reopen a live source that ends or fails.

        A live source (microphone, network URL, generators) is reopened after a failure or
        an unexpected end, waiting ``RESTART_BACKOFF_S`` doubling up to ``RESTART_BACKOFF_MAX_S``
        between attempts, unless the run is finite (a file, stdin, ``max_seconds``). Audio
        after a reopen starts a new ``session`` (seq from 0), so the learner treats it as a
        restart, not as a gap storm; the time away is counted in ``source_gap_seconds``.
        """
        c, m = self.cfg.capture, self.metrics
        seq, pending = 0, 0
        backoff = RESTART_BACKOFF_S
        away_since: float | None = None  # monotonic time of the last audio before a failure, until audio flows again
        last_audio = time.monotonic()
        while not self._stop.is_set():
            src = self.source
            seen_dropped = seen_overflows = 0
            try:
                for block in src:
                    last_audio = time.monotonic()
                    if away_since is not None:  # back after a reopen: a new session
                        m.source_gap_seconds.labels(self.stream).inc(last_audio - away_since)
                        away_since, backoff = None, RESTART_BACKOFF_S
                        self.session = int.from_bytes(os.urandom(8), "little")
                        seq, pending = 0, 0
                        log.info("source %s is back: new session %016x", c.source, self.session)
                    d, o = src.dropped - seen_dropped, src.overflows - seen_overflows
                    seen_dropped, seen_overflows = src.dropped, src.overflows
                    if d:  # blocks lost inside the source: skip their seq numbers
                        self._drop("device_queue_full", d)
                        seq += d
                        pending |= FLAG_AFTER_DROP
                    if o:
                        self.overflows += o
                        m.overflows.labels(self.stream).inc(o)
                    x = block.samples
                    if self.max_frames:
                        x = x[: self.max_frames - self.frames_produced]
                    if x.shape[0] == 0:
                        break
                    m.up.labels(self.stream).set(1)
                    self.frames_produced += x.shape[0]
                    m.audio_seconds.labels(self.stream).inc(x.shape[0] / c.sample_rate)
                    flags = pending | (FLAG_INPUT_OVERFLOW if block.overflow else 0)
                    w = AudioWindow(self.stream, seq, block.capture_ns, c.sample_rate,
                                    to_wire_dtype(x, c.dtype), session=self.session, flags=flags)
                    seq += 1
                    if self._enqueue(w):
                        pending = 0
                    else:
                        pending = FLAG_AFTER_DROP
                    if self.max_frames and self.frames_produced >= self.max_frames:
                        break
                else:
                    if not src.finite and not self._stop.is_set():
                        raise SourceError("source ended unexpectedly")
                break  # finite source done, max_seconds reached, or stopped
            except Exception as exc:  # noqa: BLE001 - every source failure is counted and reported
                self.source_errors += 1
                m.source_errors.labels(self.stream).inc()
                m.up.labels(self.stream).set(0)
                log.error("source %s failed: %s", c.source, exc)
                src.close()
                if src.finite or self.max_frames or self._stop.is_set():
                    self.failed = str(exc)
                    break
                if away_since is None:
                    away_since = last_audio
                backoff = self._reopen(backoff)
                if backoff is None:
                    break
        self.source.close()
        m.up.labels(self.stream).set(0)
        self._source_done.set()

    def _reopen(self, backoff: float) -> float | None:
        """Wait ``backoff``, doubling per failed attempt, until a new source opens; return the
        next backoff, or None when the daemon is stopping. A failed open is counted like a
        failed read: the closed source is never read again (it would only fail once more)."""
        c, m = self.cfg.capture, self.metrics
        while not self._stop.wait(backoff):
            backoff = min(2 * backoff, RESTART_BACKOFF_MAX_S)
            try:
                self.source = self.make_source()
            except Exception as exc:  # noqa: BLE001 - the device or server may still be away
                self.source_errors += 1
                m.source_errors.labels(self.stream).inc()
                log.error("source %s cannot be reopened (next try in %.1f s): %s", c.source, backoff, exc)
                continue
            log.info("source %s reopened", c.source)
            return backoff
        return None

    def _enqueue(self, w: AudioWindow) -> bool:
        if self.lossless:
            while not self._stop.is_set():
                try:
                    self.queue.put(w, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            self._drop("queue_full")
            return False
        try:
            self.queue.put_nowait(w)
            return True
        except queue.Full:
            self._drop("queue_full")
            return False

    # --- sender (main thread) -----------------------------------------------------

    def _send(self, sock: zmq.Socket, w: AudioWindow, flags: int) -> bool:
        w = dataclasses.replace(w, sent_ns=time.time_ns(), flags=w.flags | flags)
        frames = encode_audio(w)
        if self.lossless:
            while not self._stop.is_set():
                if sock.poll(200, zmq.POLLOUT):
                    break
        try:
            sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=SEND_COPY)
        except zmq.Again:
            self._drop("hwm")
            return False
        self.sent += 1
        self.metrics.windows_sent.labels(self.stream).inc()
        self.metrics.bytes_sent.labels(self.stream).inc(sum(len(f) for f in frames))
        return True

    def run(self) -> int:
        """Serve /metrics, start the source thread, send until done; return the exit code."""
        c = self.cfg.capture
        try:
            server = serve(self.metrics.registry, c.metrics_host, c.metrics_port)
        except OSError as exc:
            self.source.close()
            raise ConfigError(f"capture.metrics_port = {c.metrics_port}: cannot listen on {c.metrics_host}: {exc}")
        ctx = zmq.Context()
        # Several endpoints are the ranks of a learner group: this stream always goes to the same one.
        learner = endpoint_for_stream([e.strip() for e in c.connect.split(",")], self.stream)
        sock = make_socket(ctx, zmq.PUSH, self.cfg.transport, connect=learner)
        log.info("capture %s: source %s -> %s, %d ms windows (%d frames) %s, session %016x%s",
                 self.stream, c.source, learner, c.window_ms, window_frames(self.cfg), c.dtype, self.session,
                 "" if not c.metrics_port else f", metrics http://{c.metrics_host}:{c.metrics_port}/metrics")
        t0 = time.monotonic()
        producer = threading.Thread(target=self._produce, name="capture-source", daemon=True)
        producer.start()
        after_drop = 0
        depth = self.metrics.queue_depth.labels(self.stream)
        try:
            while True:
                try:
                    w = self.queue.get(timeout=0.1)
                except queue.Empty:
                    if self._source_done.is_set() or self._stop.is_set():
                        break
                    continue
                depth.set(self.queue.qsize())
                after_drop = 0 if self._send(sock, w, after_drop) else FLAG_AFTER_DROP
            producer.join(timeout=2)  # a stdin read may never return; the thread is a daemon
            while True:  # windows put after the loop saw the queue empty
                try:
                    w = self.queue.get_nowait()
                except queue.Empty:
                    break
                after_drop = 0 if self._send(sock, w, after_drop) else FLAG_AFTER_DROP
            depth.set(0)
        finally:
            # Offline (lossless) runs give the socket time to hand over what it still holds;
            # live runs must not hang on an absent learner.
            linger = self.cfg.transport.linger_ms
            if self.lossless:
                linger = max(linger, STOPPED_LINGER_MS if self._stop.is_set() else LOSSLESS_LINGER_MS)
            sock.close(linger=linger)
            ctx.term()
            if server is not None:
                server[0].shutdown()
        wall = time.monotonic() - t0
        audio_s = self.frames_produced / c.sample_rate
        log.info(
            "capture %s done in %.1f s: %d windows sent (%.2f windows/s), %.1f s audio; dropped %s; "
            "input overflows %d; source errors %d%s",
            self.stream, wall, self.sent, self.sent / wall if wall > 0 else 0.0, audio_s,
            " ".join(f"{k}={v}" for k, v in self.dropped.items()), self.overflows, self.source_errors,
            f"; FAILED: {self.failed}" if self.failed else "",
        )
        return 1 if self.failed else 0


    def summary(self) -> dict:
        """The exit counts: what a caller compares with the learner's, read after the last send
        (a /metrics scrape taken before the stop misses the windows the drain sent)."""
        return {
            "stream": self.stream, "session": f"{self.session:016x}", "windows_sent": self.sent,
            "windows_dropped": dict(self.dropped), "audio_seconds": self.frames_produced / self.cfg.capture.sample_rate,
            "input_overflows": self.overflows, "source_errors": self.source_errors, "failed": self.failed,
        }


def run_capture(cfg: Config, summary_json: str | os.PathLike | None = None) -> int:
    """Run a capture daemon until done, stopping cleanly on SIGINT/SIGTERM; with
    ``summary_json``, write its exit counts (``Capture.summary``) there when it stops."""
    cap = Capture(cfg)
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda signum, frame: cap.stop())
    try:
        return cap.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if summary_json:
            atomic_write(Path(summary_json), lambda f: f.write(json.dumps(cap.summary()).encode()))
