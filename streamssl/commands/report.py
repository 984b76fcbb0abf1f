"""``streamssl report``: PNG plots of loss, drift and throughput from a run's history."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamssl.config import ConfigError
from streamssl.observability.history import History
from streamssl.observability.report import plot


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint-dir", required=True, help="the learner's checkpoint dir (holds metrics.jsonl)")
    p.add_argument("--out", help="where to write the PNGs (default: the checkpoint dir)")


def run(args: argparse.Namespace) -> int:
    history = Path(args.checkpoint_dir) / "metrics.jsonl"
    if not history.is_file():
        raise ConfigError(f"--checkpoint-dir {args.checkpoint_dir}: no metrics.jsonl (did a learner run there?)")
    records = History.read(history)
    for path in plot(records, args.out or args.checkpoint_dir):
        print(path)
    return 0
