"""``streamssl embed``: offline embeddings of audio files with any checkpoint.

Each file goes the live path (``streamssl.learning.files``), so a row here is what
subscribers of a learner at that checkpoint received for the same window of the same
audio. ``--per-file`` gives one row per file instead: the readout over all its frames.

Output: ``OUT.npy`` (rows, dim) float32, files in the order given; ``OUT.index.json``
maps each row to its file (and window)::

    {"checkpoint": ..., "model_step": N, "dim": D, "sample_rate": 16000, "window_ms": 500,
     "dtype": "int16", "per_file": false,
     "rows": [{"file": PATH, "stream_id": NAME, "seq": 0, "start_s": 0.0, "duration_s": 0.5}, ...]}
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files soundfile can read (WAV, FLAC, OGG, ...)")
    p.add_argument("--checkpoint", required=True, help="checkpoint file, or a directory (its newest good checkpoint)")
    p.add_argument("--out", required=True, help="output .npy; the row index goes to OUT.index.json beside it")
    p.add_argument("--window-ms", type=int, default=500, help="window length, as capture.window_ms (default 500)")
    p.add_argument("--dtype", choices=("int16", "float32"), default="int16",
                   help="wire sample type the live capture would use (capture.dtype, default int16)")
    p.add_argument("--per-file", action="store_true", help="one row per file (readout over all its frames)")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda (default cpu)")


def index_path(out: Path) -> Path:
    """OUT.npy -> OUT.index.json (np.save appends .npy to a name without it, so strip it either way)."""
    return out.parent / (out.name.removesuffix(".npy") + ".index.json")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from streamssl.learning.checkpoint import CheckpointError, learner_from_checkpoint
    from streamssl.learning.files import embed_file, file_embedding

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
        path = Path(name)
        if args.per_file:
            embeddings.append(file_embedding(learner, path, args.window_ms, args.dtype)[None])
            rows.append({"file": str(path), "stream_id": path.name})
        else:
            vectors, index_rows = embed_file(learner, path, args.window_ms, args.dtype)
            embeddings.append(vectors)
            rows += [asdict(r) for r in index_rows]
    matrix = np.concatenate(embeddings).astype(np.float32) if embeddings else np.zeros((0, learner.dim), np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, matrix)
    index = {
        "checkpoint": str(args.checkpoint), "model_step": learner.step, "dim": learner.dim,
        "sample_rate": learner.sample_rate, "window_ms": args.window_ms, "dtype": args.dtype,
        "per_file": args.per_file, "rows": rows,
    }
    index_path(out).write_text(json.dumps(index, indent=1))
    unit = "files" if args.per_file else "windows"
    print(f"{matrix.shape[0]} {unit} from {len(args.files)} file(s) -> {out} ({matrix.shape[1]}-d, "
          f"model step {learner.step})", file=sys.stderr)
    return 0
