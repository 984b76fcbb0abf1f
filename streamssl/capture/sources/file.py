"""``file:PATH``: an audio file read with soundfile (libsndfile: WAV, FLAC, OGG, ...).

Resampled to the configured rate with a streaming polyphase filter when the file's
rate differs, mixed to the configured channel count, optionally looped (seamlessly:
the resampler sees one continuous signal) and optionally paced at real time so a file
can stand in for a live device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from streamssl.config import ConfigError
from streamssl.capture.resample import StreamResampler
from streamssl.capture.sources.base import BaseSource, Block, SourceError, fit_channels

READ_FRAMES = 16384


class FileSource(BaseSource):
    def __init__(self, path: str, *, loop: bool = False, **kw):
        super().__init__(**kw)
        self.path = Path(path).expanduser()
        self.loop = loop
        self.finite = not loop
        try:
            info = sf.info(str(self.path))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise ConfigError(f"capture.source = 'file:{path}': cannot read audio: {exc}") from None
        if info.frames == 0 and loop:
            raise ConfigError(f"capture.source = 'file:{path}': the file has no audio to loop")
        if info.channels < self.channels and info.channels != 1:
            raise ConfigError(
                f"capture.channels = {self.channels}: file:{path} has only {info.channels} channels"
            )
        self.file_rate = int(info.samplerate)
        self.file_frames = int(info.frames)
        if self.file_rate != self.sample_rate:
            import scipy.signal  # noqa: F401 - ~0.5 s to import: pay it at start, not in the paced loop

    def _raw(self) -> Iterator[np.ndarray]:
        try:
            with sf.SoundFile(str(self.path)) as f:
                while not self.closed:
                    x = f.read(READ_FRAMES, dtype="float32", always_2d=True)
                    if x.shape[0] == 0:
                        if not self.loop:
                            return
                        f.seek(0)
                        continue
                    yield fit_channels(x, self.channels, f"file:{self.path}")
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise SourceError(f"file:{self.path}: read failed: {exc}") from None

    def _chunks(self) -> Iterator[np.ndarray]:
        if self.file_rate == self.sample_rate:
            yield from self._raw()
            return
        rs = StreamResampler(self.file_rate, self.sample_rate, self.channels)
        for x in self._raw():
            yield np.clip(rs.process(x), -1.0, 1.0)
        if not self.closed:
            yield np.clip(rs.flush(), -1.0, 1.0)

    def __iter__(self) -> Iterator[Block]:
        return self._paced(self._chunks())
