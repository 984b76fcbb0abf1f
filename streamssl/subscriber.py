"""Receiving embeddings: a lazy generator over a SUB socket, with gap accounting.

PUB drops messages for a slow subscriber rather than slowing the learner, and a new
subscriber misses what was published before it joined; both show up here as gaps in
a stream's ``seq`` (within one capture session), counted in ``Subscription.gaps``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import zmq

from streamssl import wire
from streamssl.config import TransportConfig
from streamssl.transport import make_socket
from streamssl.wire import EmbeddingFrame, WireError


@dataclass
class StreamPosition:
    session: int
    seq: int


@dataclass
class Subscription:
    """An iterable of EmbeddingFrame from one learner; create it with ``subscribe``.

    ``timeout`` is how long to wait for each next frame: None waits forever, otherwise
    ``TimeoutError`` is raised, so a dead learner is never mistaken for a quiet one.
    """

    endpoint: str
    streams: tuple[str, ...] = ()
    timeout: float | None = None
    transport: TransportConfig = field(default_factory=TransportConfig)
    received: int = 0
    gaps: int = 0  # windows missing between consecutive frames of one stream session
    rejected: int = 0  # malformed messages skipped
    _positions: dict[str, StreamPosition] = field(default_factory=dict, repr=False)

    def __iter__(self) -> Iterator[EmbeddingFrame]:
        ctx = zmq.Context.instance()
        sock = make_socket(ctx, zmq.SUB, self.transport, connect=self.endpoint)
        for sid in self.streams or ("",):
            sock.setsockopt(zmq.SUBSCRIBE, wire.topic_for(sid) if sid else b"")
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        try:
            while True:
                deadline = None if self.timeout is None else time.monotonic() + self.timeout
                while True:
                    wait_ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
                    if poller.poll(wait_ms if wait_ms is not None else 1000):
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        raise TimeoutError(f"no embedding from {self.endpoint} within {self.timeout} s")
                parts = sock.recv_multipart(copy=False)
                try:
                    frame = wire.decode_embedding(parts)
                except WireError:
                    self.rejected += 1
                    continue
                self._account(frame)
                yield frame
        finally:
            sock.close(0)

    def _account(self, frame: EmbeddingFrame) -> None:
        self.received += 1
        pos = self._positions.get(frame.stream_id)
        if pos is not None and pos.session == frame.session and frame.seq > pos.seq + 1:
            self.gaps += frame.seq - pos.seq - 1
        self._positions[frame.stream_id] = StreamPosition(frame.session, frame.seq)


def subscribe(
    endpoint: str = "tcp://127.0.0.1:5556",
    streams: Iterable[str] | None = None,
    timeout: float | None = None,
    transport: TransportConfig | None = None,
) -> Subscription:
    """``for frame in subscribe("tcp://127.0.0.1:5556", streams=["mic"], timeout=10): ...``"""
    return Subscription(endpoint, tuple(streams or ()), timeout, transport or TransportConfig())


def frame_record(frame: EmbeddingFrame, received_ns: int | None = None) -> dict:
    """One JSON-serialisable record per embedding (the .jsonl output format)."""
    record = {
        "stream_id": frame.stream_id,
        "seq": frame.seq,
        "session": frame.session,
        "capture_ns": frame.capture_ns,
        "model_step": frame.model_step,
        "dim": frame.dim,
        "embedding": [float(v) for v in frame.embedding],
    }
    if received_ns is not None:
        record["received_ns"] = received_ns
    return record


class EmbeddingWriter:
    """Writes frames to .jsonl (one line each, flushed) or .npy (stacked at close)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.suffix not in (".jsonl", ".npy"):
            raise ValueError(f"--out {self.path}: must end in .jsonl or .npy")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rows: list[np.ndarray] = []
        self._file = self.path.open("w") if self.path.suffix == ".jsonl" else None

    def write(self, frame: EmbeddingFrame, received_ns: int | None = None) -> None:
        if self._file is not None:
            self._file.write(json.dumps(frame_record(frame, received_ns)) + "\n")
            self._file.flush()
        else:
            self._rows.append(np.array(frame.embedding, dtype=np.float32))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        else:
            dim = self._rows[0].shape[0] if self._rows else 0
            stacked = np.stack(self._rows) if self._rows else np.zeros((0, dim), np.float32)
            tmp = self.path.with_suffix(".tmp.npy")
            np.save(tmp, stacked)
            tmp.replace(self.path)
