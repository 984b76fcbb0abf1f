"""``streamssl events``: what kinds of sound are on the streams, and when something new starts."""

from __future__ import annotations

import argparse
import signal
import sys

from streamssl import config
from streamssl.cli import add_config_arguments
from streamssl.config import ConfigError, endpoint


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5556", help="learner embeddings endpoint")
    p.add_argument("--stream", action="append", default=[], help="only this stream id (repeatable)")
    p.add_argument("--publish", help="also PUB each event here (topic = stream id), e.g. tcp://127.0.0.1:5557")
    p.add_argument("--metrics-port", type=int, default=9110, help="/metrics port on loopback (default 9110; 0 disables)")
    p.add_argument("--out", help="write events to FILE.jsonl instead of stdout")
    p.add_argument("--checkpoint-dir", help="keep the clusters here and resume from them")
    p.add_argument("--count", type=int, default=0, help="stop after N windows (0 = forever)")
    p.add_argument("--timeout", type=float, default=None, help="fail if no embedding arrives for S seconds")


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config, args.overrides)
    for name, value in (("endpoint", args.endpoint), ("--publish", args.publish)):
        problem = endpoint(value) if value else None
        if problem:
            raise ConfigError(f"{name} {value!r}: {problem}")
    if args.out and not args.out.endswith(".jsonl"):
        raise ConfigError(f"--out {args.out}: must end in .jsonl")
    from streamssl.events.service import EventsService

    out = open(args.out, "a") if args.out else sys.stdout
    try:
        service = EventsService(cfg, args.endpoint, tuple(args.stream), publish=args.publish, out=out,
                                metrics_port=args.metrics_port, checkpoint_dir=args.checkpoint_dir)
        signal.signal(signal.SIGTERM, service.stop)
        signal.signal(signal.SIGINT, service.stop)
        return service.run(max_windows=args.count or None, timeout_s=args.timeout)
    finally:
        if out is not sys.stdout:
            try:
                out.close()
            except OSError as exc:  # a full disk: the lines still buffered are lost, and said so
                print(f"streamssl events: could not write the last events to {args.out}: {exc}", file=sys.stderr)
