"""Transport speed: our wire over real PUSH/PULL sockets against bare pyzmq with the same frames.

Part of ``streamssl bench``.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np

from streamssl.config import Config
from streamssl.wire import window_frames


# --- transport --------------------------------------------------------------------


def _send_ours(endpoint: str, n: int, frames: int, rate: int) -> None:
    """Sender process: a fresh AudioWindow per message through encode_audio, like capture."""
    import zmq

    from streamssl import wire
    from streamssl.capture.daemon import SEND_COPY
    from streamssl.config import TransportConfig
    from streamssl.transport import make_socket

    ctx = zmq.Context()
    sock = make_socket(ctx, zmq.PUSH, TransportConfig(), connect=endpoint)
    samples = (np.random.default_rng(0).standard_normal((frames, 1)) * 3000).astype(np.int16)
    for seq in range(n):
        w = wire.AudioWindow("bench", seq, time.time_ns(), rate, samples, session=1, sent_ns=time.time_ns())
        sock.send_multipart(wire.encode_audio(w), copy=SEND_COPY)
    sock.close(linger=10_000)
    ctx.term()


def _send_raw(endpoint: str, n: int, frames: int, rate: int) -> None:
    """Sender process: bare pyzmq, the same two frame sizes, nothing encoded."""
    import zmq

    from streamssl.wire import HEADER_SIZE

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.connect(endpoint)
    header, payload = bytes(HEADER_SIZE), bytes(frames * 2)
    for _ in range(n):
        sock.send_multipart([header, payload])
    sock.close(linger=10_000)
    ctx.term()


def transport_rate(cfg: Config, n: int, ours: bool) -> float:
    """Messages/s received over a real PUSH/PULL TCP loopback pair, sender in its own process.

    Ours: ``make_socket`` on both ends, ``recv_multipart(copy=False)`` + ``decode_audio`` as
    the learner does. Raw: default sockets, plain ``recv_multipart()``. The clock runs from
    the first message received to the last, so process start-up is not counted.
    """
    import zmq

    from streamssl import wire
    from streamssl.procs import free_port
    from streamssl.transport import make_socket

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    if ours:
        sock = make_socket(ctx, zmq.PULL, cfg.transport, bind=endpoint)
    else:
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(endpoint)
    sender = mp.get_context("spawn").Process(
        target=_send_ours if ours else _send_raw, args=(endpoint, n, window_frames(cfg.capture.sample_rate, cfg.capture.window_ms), cfg.capture.sample_rate)
    )
    sender.start()
    try:
        sock.setsockopt(zmq.RCVTIMEO, 30_000)
        if ours:
            wire.decode_audio(sock.recv_multipart(copy=False))
            start = time.perf_counter()
            for _ in range(n - 1):
                wire.decode_audio(sock.recv_multipart(copy=False))
        else:
            sock.recv_multipart()
            start = time.perf_counter()
            for _ in range(n - 1):
                sock.recv_multipart()
        elapsed = time.perf_counter() - start
    finally:
        sender.join(30)
        sock.close(0)
        ctx.term()
    return (n - 1) / elapsed


