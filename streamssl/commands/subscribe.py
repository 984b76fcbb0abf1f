"""``streamssl subscribe``: print or save embeddings published by a learner."""

from __future__ import annotations

import argparse
import sys
import time

from streamssl.config import ConfigError
from streamssl.serving.subscriber import EmbeddingWriter, subscribe


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5556", help="learner embeddings endpoint")
    p.add_argument("--stream", action="append", default=[], help="only this stream id (repeatable)")
    p.add_argument("--count", type=int, default=0, help="stop after N embeddings (0 = forever)")
    p.add_argument("--timeout", type=float, default=None, help="fail if no embedding arrives for S seconds")
    p.add_argument("--out", help="FILE.jsonl (one object per embedding) or FILE.npy (stacked vectors)")


def run(args: argparse.Namespace) -> int:
    try:
        writer = EmbeddingWriter(args.out) if args.out else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    sub = subscribe(args.endpoint, streams=args.stream, timeout=args.timeout)
    status = 0
    try:
        for frame in sub:
            now = time.time_ns()
            if writer:
                writer.write(frame, now)
            else:
                print(
                    f"{frame.stream_id} seq={frame.seq} step={frame.model_step} "
                    f"latency_ms={(now - frame.capture_ns) / 1e6:.1f} |e|={float((frame.embedding ** 2).sum()) ** 0.5:.3f}",
                    flush=True,
                )
            if args.count and sub.received >= args.count:
                break
    except TimeoutError as exc:
        print(f"streamssl subscribe: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
        if writer:
            writer.close()
    print(f"received {sub.received} embeddings, {sub.gaps} missing (seq gaps), {sub.rejected} malformed", file=sys.stderr)
    return status
