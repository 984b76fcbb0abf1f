"""``ffmpeg:URL_OR_PATH``: anything ffmpeg can decode (containers, codecs, HTTP/RTSP/...).

ffmpeg runs as a child process and writes s16le PCM at the configured rate and
channel count to a pipe (``-nostdin -loglevel error [-re] -i URL -vn -ac C -ar R -f
s16le pipe:1``), so decoding, resampling and network handling are ffmpeg's job. Its
stderr is collected by a thread and quoted in the error when it fails. With
``realtime`` the input is read at its native rate (``-re``); ``loop`` adds
``-stream_loop -1``. Blocks are stamped when they come off the pipe.

A network URL is a *live* source (``finite`` is False): when the stream ends or ffmpeg
gives up on it, the capture daemon reopens it with capped exponential backoff. ffmpeg's
own reconnect is kept short (``-reconnect_delay_max``) so that an outage is handed to
the daemon, which counts it, instead of hanging inside ffmpeg for minutes. A file is
finite unless looped.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

from streamssl.config import ConfigError
from streamssl.procs import terminate
from streamssl.capture.sources.base import BaseSource, Block, SourceError
from streamssl.capture.sources.pcm import read_exact, s16le_to_float


RECONNECT_DELAY_MAX_S = 2  # ffmpeg's own retries stop after this; the daemon's backoff takes over


class FfmpegSource(BaseSource):
    def __init__(self, url: str, *, loop: bool = False, **kw):
        super().__init__(**kw)
        self.url = url
        self.loop = loop
        self.network = "://" in url and not url.startswith("file:")
        self.finite = not loop and not self.network
        self.binary = shutil.which("ffmpeg")
        if self.binary is None:
            raise ConfigError(f"capture.source = 'ffmpeg:{url}': ffmpeg not found on PATH (Debian package ffmpeg)")
        if "://" not in url and not Path(url).expanduser().exists():
            raise ConfigError(f"capture.source = 'ffmpeg:{url}': file does not exist")
        self._proc: subprocess.Popen | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)

    def command(self) -> list[str]:
        cmd = [self.binary, "-nostdin", "-hide_banner", "-loglevel", "error"]
        if self.realtime:
            cmd.append("-re")
        if self.loop:
            cmd += ["-stream_loop", "-1"]
        if self.network:  # live: start after a short probe (0.5 s), not ffmpeg's default 5 MB
            cmd += ["-probesize", "32768", "-analyzeduration", "500000",
                    "-reconnect", "1", "-reconnect_streamed", "1", "-reconnect_delay_max", str(RECONNECT_DELAY_MAX_S)]
        src = self.url if "://" in self.url else str(Path(self.url).expanduser())
        return cmd + ["-i", src, "-vn", "-ac", str(self.channels), "-ar", str(self.sample_rate), "-f", "s16le", "pipe:1"]

    def _drain_stderr(self, proc: subprocess.Popen) -> None:
        for line in iter(proc.stderr.readline, b""):
            text = line.decode(errors="replace").rstrip()
            if text:
                self._stderr.append(text)

    def __iter__(self) -> Iterator[Block]:
        proc = self._proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        drain = threading.Thread(target=self._drain_stderr, args=(proc,), daemon=True, name="ffmpeg-stderr")
        drain.start()
        n_bytes = self.block_frames * self.channels * 2
        try:
            while not self.closed:
                raw = read_exact(proc.stdout, n_bytes)
                if len(raw) >= 2 * self.channels:
                    yield Block(s16le_to_float(raw, self.channels), time.time_ns())
                if len(raw) < n_bytes:
                    break
            if self.closed:
                return
            rc = proc.wait(timeout=10)
            drain.join(timeout=2)
            if rc != 0:
                detail = " | ".join(self._stderr) or "no message"
                raise SourceError(f"ffmpeg exited with status {rc} for {self.url}: {detail}")
        finally:
            self._stop()

    def _stop(self) -> None:
        proc = self._proc
        if proc is not None:
            terminate(proc, timeout=3)

    def close(self) -> None:
        super().close()
        self._stop()
