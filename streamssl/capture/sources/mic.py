"""``mic[:DEVICE]``: a real input device through PortAudio (sounddevice).

The PortAudio callback runs on a real-time thread, so it only copies the block and
``put_nowait``s it into a bounded queue; it never blocks, logs or waits on the
network. When the queue is full the block is dropped and counted (``dropped``), and
device overruns reported in ``status.input_overflow`` are counted (``overflows``) and
flagged on the block. DEVICE is a PortAudio index or a substring of the device name
(``python -m sounddevice`` lists them); without it the default input is used, which
under PulseAudio is the default source.
"""

from __future__ import annotations

import queue
import time
from typing import Iterator

import numpy as np

from streamssl.config import ConfigError
from streamssl.capture.sources.base import BaseSource, Block, SourceError

# Blocks the callback may queue before dropping (at 0.5 s blocks: 16 s of audio).
QUEUE_BLOCKS = 32
# The first callback can take 1-2 s after the stream opens (PulseAudio via ALSA).
STALL_TIMEOUT_S = 10.0


class MicSource(BaseSource):
    finite = False

    def __init__(self, device: str = "", **kw):
        super().__init__(**kw)
        try:
            import sounddevice as sd
        except OSError as exc:  # libportaudio missing
            raise ConfigError(f"capture.source = 'mic': PortAudio is not available ({exc}); install libportaudio2")
        self._sd = sd
        self.device: int | str | None = int(device) if device.isdigit() else (device or None)
        try:
            info = sd.query_devices(self.device, "input")
            sd.check_input_settings(
                device=self.device, channels=self.channels, samplerate=self.sample_rate, dtype="float32"
            )
        except (ValueError, sd.PortAudioError) as exc:
            raise ConfigError(f"capture.source = 'mic:{device}': {exc}") from None
        self.device_name = str(info["name"])
        self._queue: queue.Queue[Block] = queue.Queue(maxsize=QUEUE_BLOCKS)
        self._overflow_pending = False
        self._stream = None

    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        now = time.time_ns()
        overflow = bool(status.input_overflow)
        if overflow:
            self._overflows += 1
        # Stamp the last sample: PortAudio gives the ADC time of the first sample on the
        # stream clock; use the lag behind "now" when it is plausible.
        lag = time_info.currentTime - time_info.inputBufferAdcTime
        last = now
        if 0.0 < lag < 1.0:
            last = now - int(lag * 1e9) + (frames - 1) * 1_000_000_000 // self.sample_rate
        block = Block(indata.copy(), min(last, now), overflow or self._overflow_pending)
        try:
            self._queue.put_nowait(block)
            self._overflow_pending = False
        except queue.Full:
            self._dropped += 1
            self._overflow_pending = True

    def __iter__(self) -> Iterator[Block]:
        sd = self._sd
        try:
            self._stream = sd.InputStream(
                device=self.device, channels=self.channels, samplerate=self.sample_rate,
                blocksize=self.block_frames, dtype="float32", callback=self._callback,
            )
            self._stream.start()
        except sd.PortAudioError as exc:
            raise SourceError(f"mic {self.device_name!r}: cannot open input stream: {exc}") from None
        try:
            waited = 0.0
            while not self.closed:
                try:
                    block = self._queue.get(timeout=0.2)
                except queue.Empty:
                    waited += 0.2
                    if not self._stream.active:
                        raise SourceError(f"mic {self.device_name!r}: input stream stopped") from None
                    if waited >= STALL_TIMEOUT_S:
                        raise SourceError(f"mic {self.device_name!r}: no audio for {STALL_TIMEOUT_S:.0f} s") from None
                    continue
                waited = 0.0
                yield block
        finally:
            self._stop()

    def _stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception:  # noqa: BLE001 - already failing or closing
                pass
