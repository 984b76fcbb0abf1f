"""What every source shares: the Block type, real-time pacing, re-blocking, channel fitting.

A source turns some audio origin into fixed-size blocks of float32 samples at the
configured rate, each stamped with the wall-clock time its *last* sample was
captured, so that latency measured downstream against that stamp is pure processing
time and never includes the window's own length.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol, runtime_checkable

import numpy as np


class SourceError(RuntimeError):
    """A source failed while running (device vanished, decoder died, bad stream)."""


@dataclass(frozen=True)
class Block:
    """``samples``: float32 (frames, channels) in [-1, 1]; ``capture_ns``: wall-clock
    ns of the block's last sample; ``overflow``: the device lost input inside it."""

    samples: np.ndarray
    capture_ns: int
    overflow: bool = False

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])


@runtime_checkable
class Source(Protocol):
    """An iterable of Blocks at the source's own rate.

    ``finite`` is True when iteration ends by itself (a file read once, stdin);
    ``overflows`` and ``dropped`` count device overflows and blocks lost inside the
    source (only the microphone loses blocks before the capture queue).
    """

    sample_rate: int
    channels: int
    block_frames: int
    finite: bool

    def __iter__(self) -> Iterator[Block]: ...

    def close(self) -> None: ...

    @property
    def overflows(self) -> int: ...

    @property
    def dropped(self) -> int: ...


class BaseSource:
    """Common state: format, a close event that interrupts pacing, loss counters."""

    finite = False

    def __init__(self, *, sample_rate: int, channels: int, block_frames: int, realtime: bool = True):
        if block_frames <= 0:
            raise ValueError("block_frames must be > 0")
        self.sample_rate = sample_rate
        self.channels = channels
        self.block_frames = block_frames
        self.realtime = realtime
        self._closed = threading.Event()
        self._overflows = 0
        self._dropped = 0

    @property
    def overflows(self) -> int:
        return self._overflows

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Stop iteration soon (interrupts a pacing sleep); safe from any thread, idempotent."""
        self._closed.set()

    def __iter__(self) -> Iterator[Block]:
        raise NotImplementedError

    def _paced(self, chunks: Iterator[np.ndarray]) -> Iterator[Block]:
        """Fixed-size blocks from ``chunks`` of any size, stamped (and paced when
        ``realtime``) on the absolute clock; stops as soon as the source is closed."""
        pacer = Pacer(self.sample_rate, self.realtime, self._closed)
        for block in reblock(chunks, self.block_frames):
            if self.closed:
                return
            capture_ns = pacer.stamp(block.shape[0])
            if self.closed:
                return
            yield Block(np.ascontiguousarray(block), capture_ns)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Pacer:
    """Stamps blocks and, in real time, releases them on an absolute schedule.

    The schedule is ``t0 + frames_so_far / rate`` from the first block, never "sleep
    one block length", so rounding and scheduling jitter do not accumulate into drift.
    In real time the stamp is the nominal capture time of the block's last sample; as
    fast as possible, the stamp is simply "now" (the audio exists as soon as it is read).
    """

    def __init__(self, sample_rate: int, realtime: bool, closed: threading.Event):
        self.sample_rate = sample_rate
        self.realtime = realtime
        self.closed = closed
        self.frames = 0
        self._t0_wall = 0
        self._t0_mono = 0

    def stamp(self, n_frames: int) -> int:
        """Account for ``n_frames`` more frames; wait for them if real time; return capture_ns."""
        if self.frames == 0:
            self._t0_wall, self._t0_mono = time.time_ns(), time.monotonic_ns()
        self.frames += n_frames
        if not self.realtime:
            return time.time_ns()
        offset = self.frames * 1_000_000_000 // self.sample_rate
        delay = (self._t0_mono + offset - time.monotonic_ns()) / 1e9
        if delay > 0:
            self.closed.wait(delay)
        return self._t0_wall + offset


def reblock(chunks: Iterable[np.ndarray], block_frames: int) -> Iterator[np.ndarray]:
    """Cut a stream of variable-length (frames, channels) chunks into fixed blocks.

    The last block holds whatever is left and may be shorter.
    """
    pending: list[np.ndarray] = []
    have = 0
    for chunk in chunks:
        if chunk.shape[0] == 0:
            continue
        pending.append(chunk)
        have += chunk.shape[0]
        if have < block_frames:
            continue
        buf = np.concatenate(pending) if len(pending) > 1 else pending[0]
        n_full = have // block_frames
        for i in range(n_full):
            yield buf[i * block_frames : (i + 1) * block_frames]
        rest = buf[n_full * block_frames :]
        pending = [rest] if rest.shape[0] else []
        have = rest.shape[0]
    if have:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]


def fit_channels(x: np.ndarray, channels: int, what: str) -> np.ndarray:
    """Map (frames, c) to (frames, channels): average down to mono, copy mono up, or keep the first."""
    c = x.shape[1]
    if c == channels:
        return x
    if channels == 1:
        return x.mean(axis=1, keepdims=True, dtype=np.float32)
    if c == 1:
        return np.repeat(x, channels, axis=1)
    if c > channels:
        return x[:, :channels]
    raise SourceError(f"{what} has {c} channels; cannot make {channels}")
