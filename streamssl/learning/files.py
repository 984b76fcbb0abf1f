"""Offline embeddings of recorded audio through the live path, so a file gives what a stream gives.

A file goes the way a live ``file:`` capture would send it to a learner that has just
loaded the checkpoint: soundfile read, mixed to mono, resampled to the model's rate with
the capture's streaming polyphase resampler, cut into capture windows (the last one
shorter), converted to the wire dtype, then ``OnlineLearner.embed`` on a fresh stream.
So a window row here is what subscribers of a learner at that checkpoint received for
the same window of the same audio. A file row is the readout over all the file's frames
(the same frames the windows saw, since streaming equals the whole; the energy gate is
then relative to the file's loudest frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class WindowRow:
    """Where one window embedding came from."""

    file: str
    stream_id: str
    seq: int
    start_s: float
    duration_s: float


def _windows(audio: np.ndarray, rate: int, stream_id: str, window_ms: int, dtype: str) -> list:
    """(samples,) float32 at ``rate`` -> AudioWindows as a capture would send them."""
    from streamssl.capture.daemon import to_wire_dtype
    from streamssl.wire import AudioWindow, window_frames

    frames = window_frames(rate, window_ms)
    out, pos = [], 0
    for seq, start in enumerate(range(0, len(audio), frames)):
        block = audio[start:start + frames]
        pos = start + len(block)
        out.append(AudioWindow(stream_id, seq, int(round(pos / rate * 1e9)), rate, to_wire_dtype(block[:, None], dtype)))
    return out


def _embed_fresh(learner, windows: list, stream_id: str) -> np.ndarray:
    """Embed one stream's windows from a fresh state, whatever the learner held under this name."""
    learner.reset_stream(stream_id)
    try:
        frames = learner.embed(windows)
    finally:
        learner.reset_stream(stream_id)
    return np.stack([np.asarray(f.embedding, dtype=np.float32) for f in frames]) if frames else np.zeros((0, learner.dim), np.float32)


def embed_windows(learner, audio: np.ndarray, stream_id: str, window_ms: int, dtype: str = "int16") -> np.ndarray:
    """(samples,) float32 at the learner's rate -> (windows, dim) live embeddings from a fresh stream state."""
    windows = _windows(np.asarray(audio, dtype=np.float32), learner.sample_rate, stream_id, window_ms, dtype)
    return _embed_fresh(learner, windows, stream_id)


def read_as_capture(path: Path, rate: int, window_ms: int, dtype: str) -> np.ndarray:
    """A file's samples exactly as a ``file:`` capture would deliver them: mono, resampled, wire-quantised."""
    from streamssl.capture.daemon import to_wire_dtype
    from streamssl.capture.sources.file import FileSource
    from streamssl.wire import pcm16_to_float, window_frames

    frames = window_frames(rate, window_ms)
    source = FileSource(str(path), sample_rate=rate, channels=1, block_frames=frames, realtime=False)
    blocks = [block.samples for block in source]
    if not blocks:
        return np.zeros(0, dtype=np.float32)
    pcm = to_wire_dtype(np.concatenate(blocks), dtype)[:, 0]
    return pcm16_to_float(pcm) if pcm.dtype == np.int16 else pcm.astype(np.float32)


def embed_file(learner, path: Path, window_ms: int, dtype: str) -> tuple[np.ndarray, list[WindowRow]]:
    """(window embeddings (n, dim), one row each) of one file, as a live capture would produce them."""
    from streamssl.wire import window_frames

    rate = learner.sample_rate
    windows = _windows(read_as_capture(path, rate, window_ms, dtype), rate, path.name, window_ms, dtype)
    frames = window_frames(rate, window_ms)
    rows = [WindowRow(str(path), w.stream_id, w.seq, w.seq * frames / rate, w.duration_s) for w in windows]
    return _embed_fresh(learner, windows, path.name), rows


def file_embedding(learner, path: Path, window_ms: int, dtype: str) -> np.ndarray:
    """(dim,) one vector for the whole file: the readout over all its frames."""
    audio = read_as_capture(path, learner.sample_rate, window_ms, dtype)
    return np.asarray(learner.embed_segments(audio[None]), dtype=np.float32)[0]
