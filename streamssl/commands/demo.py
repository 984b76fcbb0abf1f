"""``streamssl demo``: learner + speech capture + subscriber on loopback (``serving/demo.py``)."""

from __future__ import annotations

import argparse

from streamssl import config
from streamssl.cli import add_config_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--seconds", type=float, default=60.0, help="how long to stream (default 60)")
    p.add_argument("--out", help="output folder (default runs/demo-TIMESTAMP, a new one per run)")
    p.add_argument("--source", default="speech", help="capture source spec (default: generated speech)")
    p.add_argument("--no-live", action="store_true", help="plain log lines instead of a live display")
    p.add_argument("--audio-seconds", type=float, metavar="N",
                   help="learn N seconds of the source as fast as the learner takes them (capture --no-realtime, "
                        "learner.learn_every_window), then stop; --seconds is then only a wall-clock cap")


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config, args.overrides)  # validate before starting anything
    from streamssl.serving.demo import run_demo

    return run_demo(cfg, config_path=args.config, overrides=args.overrides, seconds=args.seconds, out=args.out,
                    source=args.source, live=not args.no_live, audio_seconds=args.audio_seconds)
