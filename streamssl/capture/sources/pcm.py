"""Reading raw s16le PCM from a byte stream: shared by ``stdin`` and ``ffmpeg:``."""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from streamssl.wire import pcm16_to_float


def read_exact(stream: BinaryIO, n_bytes: int) -> bytes:
    """Read up to ``n_bytes``, returning fewer only at end of stream."""
    parts: list[bytes] = []
    have = 0
    while have < n_bytes:
        chunk = stream.read(n_bytes - have)
        if not chunk:
            break
        parts.append(chunk)
        have += len(chunk)
    return b"".join(parts)


def s16le_to_float(raw: bytes, channels: int) -> np.ndarray:
    """Whole frames of interleaved s16le as float32 (frames, channels) in [-1, 1)."""
    usable = len(raw) // (2 * channels) * 2 * channels
    return pcm16_to_float(np.frombuffer(raw[:usable], dtype="<i2").reshape(-1, channels))
