"""``stdin``: raw interleaved s16le PCM at the configured rate and channel count.

Whatever writes the pipe sets the pace (``arecord -f S16_LE -r 16000 -c 1 -t raw |``,
or ``ffmpeg ... -f s16le - |``), so blocks are stamped with the time they were read,
not paced again. The source ends at end of input; a trailing partial frame is ignored.
"""

from __future__ import annotations

import sys
import time
from typing import BinaryIO, Iterator

from streamssl.capture.sources.base import BaseSource, Block, SourceError
from streamssl.capture.sources.pcm import read_exact, s16le_to_float


class StdinSource(BaseSource):
    finite = True

    def __init__(self, *, stream: BinaryIO | None = None, **kw):
        super().__init__(**kw)
        self.stream = stream if stream is not None else sys.stdin.buffer

    def __iter__(self) -> Iterator[Block]:
        n_bytes = self.block_frames * self.channels * 2
        while not self.closed:
            try:
                raw = read_exact(self.stream, n_bytes)
            except OSError as exc:
                raise SourceError(f"stdin: read failed: {exc}") from None
            if len(raw) < 2 * self.channels:
                return
            yield Block(s16le_to_float(raw, self.channels), time.time_ns())
            if len(raw) < n_bytes:
                return
