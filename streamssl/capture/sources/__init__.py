"""Audio sources: one module per kind, one spec string to pick one.

``open_source("file:/a.wav", sample_rate=16000, block_frames=8000)`` returns a Source:
an iterable of fixed-size ``Block``s (float32, (frames, channels), stamped with the
wall-clock time of their last sample) at the source's own rate. Everything that can be
known to be wrong before audio flows (unknown kind, missing file, no such device,
missing tool) raises ``ConfigError`` here, so the daemon fails at start with one line;
failures while running raise ``SourceError``.

Specs: ``mic[:DEVICE]``, ``file:PATH``, ``ffmpeg:URL_OR_PATH``, ``stdin``, ``speech[:turns|sentences]``,
``synth``, ``scenes[:NOVEL_AFTER_S]``; their rules live once, in ``config.parse_source_spec`` (re-exported here as
``parse_spec``), so a config file and ``open_source`` refuse the same specs.
"""

from __future__ import annotations

from streamssl.capture.sources.base import BaseSource, Block, Source, SourceError
from streamssl.config import parse_source_spec as parse_spec

__all__ = ["Block", "Source", "SourceError", "BaseSource", "open_source", "parse_spec"]


def open_source(
    spec: str,
    *,
    sample_rate: int,
    channels: int = 1,
    block_frames: int,
    realtime: bool = True,
    loop: bool = False,
    seed: int = 0,
) -> Source:
    """Build the source that ``spec`` names (see the module docstring)."""
    kind, arg = parse_spec(spec)
    common = dict(sample_rate=sample_rate, channels=channels, block_frames=block_frames, realtime=realtime)
    if kind == "mic":
        from streamssl.capture.sources.mic import MicSource

        return MicSource(arg, **common)
    if kind == "file":
        from streamssl.capture.sources.file import FileSource

        return FileSource(arg, loop=loop, **common)
    if kind == "ffmpeg":
        from streamssl.capture.sources.ffmpeg import FfmpegSource

        return FfmpegSource(arg, loop=loop, **common)
    if kind == "stdin":
        from streamssl.capture.sources.stdin import StdinSource

        return StdinSource(**common)
    if kind == "speech":
        from streamssl.capture.sources.speech import SpeechSource

        return SpeechSource(seed=seed, mode=arg or "turns", **common)
    if kind == "scenes":
        from streamssl.capture.sources.scenes import ScenesSource

        return ScenesSource(float(arg) if arg else None, seed=seed, **common)
    from streamssl.capture.sources.synth import SynthSource

    return SynthSource(seed=seed, **common)
