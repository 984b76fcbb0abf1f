"""Receiving embeddings: a lazy generator over a SUB socket, with gap accounting.

PUB drops messages for a slow subscriber rather than slowing the learner, and a new
subscriber misses what was published before it joined; both show up here as gaps in
a stream's ``seq`` (within one capture session), counted in ``Subscription.gaps``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


class Subscription:
    """An iterator of EmbeddingFrame from one learner; create it with ``subscribe``.

    The SUB socket is opened on the first ``next()`` and kept until ``close()`` (or the
    end of a ``with`` block), so a ``TimeoutError`` — raised when nothing arrives within
    ``timeout`` seconds, so a dead learner is never mistaken for a quiet one — does not
    lose the subscription: iterating again continues on the same socket.
    """

    def __init__(self, endpoint: str, streams: tuple[str, ...], timeout: float | None, transport: TransportConfig):
        self.endpoint = endpoint
        self.streams = streams
        self.timeout = timeout
        self.transport = transport
        self.received = 0
        self.gaps = 0  # windows missing between consecutive frames of one stream session
        self.rejected = 0  # malformed messages skipped
        self._positions: dict[str, StreamPosition] = {}
        self._sock: zmq.Socket | None = None

    def _open(self) -> zmq.Socket:
        sock = make_socket(zmq.Context.instance(), zmq.SUB, self.transport, connect=self.endpoint)
        for sid in self.streams or ("",):
            sock.setsockopt(zmq.SUBSCRIBE, wire.topic_for(sid) if sid else b"")
        return sock

    def __iter__(self) -> Iterator[EmbeddingFrame]:
        return self

    def __next__(self) -> EmbeddingFrame:
        if self._sock is None:
            self._sock = self._open()
        timeout_ms = None if self.timeout is None else int(self.timeout * 1000)
        while True:
            if not self._sock.poll(timeout_ms):
                raise TimeoutError(f"no embedding from {self.endpoint} within {self.timeout} s")
            parts = self._sock.recv_multipart(copy=False)
            try:
                frame = wire.decode_embedding(parts)
            except WireError:
                self.rejected += 1
                continue
            self._account(frame)
            return frame

    def _account(self, frame: EmbeddingFrame) -> None:
        self.received += 1
        pos = self._positions.get(frame.stream_id)
        if pos is not None and pos.session == frame.session and frame.seq > pos.seq + 1:
            self.gaps += frame.seq - pos.seq - 1
        self._positions[frame.stream_id] = StreamPosition(frame.session, frame.seq)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
