"""``streamssl embed``: offline embeddings of audio files with any checkpoint.

Each file goes through the same path as a live ``file:`` capture into a learner that
has just loaded the checkpoint: soundfile read, mixed to mono, resampled to the model's
rate with the capture's streaming polyphase resampler (equal to ``resample_poly`` of the
whole file), cut into ``--window-ms`` windows (the last one shorter), converted to the
wire dtype (int16 by default, like ``capture.dtype``), then ``OnlineLearner.embed`` on a
fresh stream named after the file. So a row here is what subscribers of a learner at
that checkpoint received for the same window of the same audio.

Output: ``OUT.npy`` (rows, dim) float32 pooled embeddings, one row per window, files in
the order given; ``OUT.index.json`` maps each row to its file and window::

    {"checkpoint": ..., "model_step": N, "dim": D, "sample_rate": 16000, "window_ms": 500,
     "dtype": "int16", "rows": [{"file": PATH, "stream_id": NAME, "seq": 0, "start_s": 0.0,
                                 "duration_s": 0.5}, ...]}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files soundfile can read (WAV, FLAC, OGG, ...)")
    p.add_argument("--checkpoint", required=True, help="checkpoint file, or a directory (its newest good checkpoint)")
    p.add_argument("--out", required=True, help="output .npy; the row index goes to OUT.index.json beside it")
    p.add_argument("--window-ms", type=int, default=500, help="window length, as capture.window_ms (default 500)")
    p.add_argument("--dtype", choices=("int16", "float32"), default="int16",
                   help="wire sample type the live capture would use (capture.dtype, default int16)")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda (default cpu)")


def index_path(out: Path) -> Path:
    """OUT.npy -> OUT.index.json (np.save appends .npy to a name without it, so strip it either way)."""
    return out.parent / (out.name.removesuffix(".npy") + ".index.json")


def embed_file(learner, path: Path, window_ms: int, dtype: str) -> tuple[list, list[dict]]:
    """(embeddings, index rows) of one file, windowed and embedded as a live capture would be."""
    import numpy as np

    from streamssl.capture.daemon import to_wire_dtype
    from streamssl.capture.sources.file import FileSource
    from streamssl.wire import AudioWindow

    rate = learner.sample_rate
    frames = max(1, rate * window_ms // 1000)  # capture.window_frames
    stream_id = path.name
    source = FileSource(str(path), sample_rate=rate, channels=1, block_frames=frames, realtime=False)
    learner.reset_stream(stream_id)  # a fresh stream, whatever the checkpoint carried under this name
    windows, rows, pos = [], [], 0
    for seq, block in enumerate(source):
        n = block.frames
        windows.append(AudioWindow(stream_id, seq, int(round((pos + n) / rate * 1e9)), rate,
                                   to_wire_dtype(block.samples, dtype)))
        rows.append({"file": str(path), "stream_id": stream_id, "seq": seq, "start_s": pos / rate,
                     "duration_s": n / rate})
        pos += n
    out = [np.asarray(f.embedding, dtype=np.float32) for f in learner.embed(windows)]
    learner.reset_stream(stream_id)
    return out, rows


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from streamssl.learning.checkpoint import CheckpointError, learner_from_checkpoint

    out = Path(args.out)
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")  # what np.save would write anyway
    if args.window_ms <= 0:
        print("streamssl embed: --window-ms must be > 0", file=sys.stderr)
        return 2
    try:
        learner = learner_from_checkpoint(args.checkpoint, device=args.device)
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"streamssl embed: {exc}", file=sys.stderr)
        return 1
    embeddings, rows = [], []
    for name in args.files:
        e, r = embed_file(learner, Path(name), args.window_ms, args.dtype)
        embeddings += e
        rows += r
    matrix = np.stack(embeddings).astype(np.float32) if embeddings else np.zeros((0, learner.dim), np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, matrix)
    index = {
        "checkpoint": str(args.checkpoint), "model_step": learner.step, "dim": learner.dim,
        "sample_rate": learner.sample_rate, "window_ms": args.window_ms, "dtype": args.dtype, "rows": rows,
    }
    index_path(out).write_text(json.dumps(index, indent=1))
    print(f"{matrix.shape[0]} windows from {len(args.files)} file(s) -> {out} ({matrix.shape[1]}-d, "
          f"model step {learner.step})", file=sys.stderr)
    return 0
