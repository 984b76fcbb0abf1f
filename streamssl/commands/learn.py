"""``streamssl learn``: the long-running online learner daemon.

Under ``torchrun --nproc-per-node N -m streamssl learn ...`` each of the N processes is
one rank of a learner group (``streamssl.learning.distributed``): rank r binds the
configured audio, embeddings and metrics ports + r.
"""

from __future__ import annotations

import argparse
import os

from streamssl import config
from streamssl.cli import add_config_arguments, flag_overrides

FLAGS = {  # command-line flag -> config field it overrides
    "audio_bind": "learner.audio_bind",
    "embeddings_bind": "learner.embeddings_bind",
    "metrics_port": "learner.metrics_port",
    "checkpoint_dir": "learner.checkpoint_dir",
    "checkpoint_interval": "learner.checkpoint_interval_s",
    "device": "learner.device",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--audio-bind", help="PULL endpoint captures push to (default tcp://127.0.0.1:5555)")
    p.add_argument("--embeddings-bind", help="PUB endpoint subscribers connect to (default tcp://127.0.0.1:5556)")
    p.add_argument("--metrics-port", help="/metrics port (default 9108; 0 disables)")
    p.add_argument("--checkpoint-dir", help="where checkpoints and metrics.jsonl go; resumes from the newest")
    p.add_argument("--checkpoint-interval", help="seconds between checkpoints (also written on SIGTERM)")
    p.add_argument("--device", help="auto | cpu | cuda")


def run(args: argparse.Namespace) -> int:
    overrides = flag_overrides(args, FLAGS)
    cfg = config.load(args.config, overrides)
    from streamssl.learning import distributed

    if distributed.launched():  # one rank of a learner group under torchrun: its own ports
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        try:
            audio, embeddings, metrics = distributed.rank_ports(
                cfg.learner.audio_bind, cfg.learner.embeddings_bind, cfg.learner.metrics_port, rank, world)
        except ValueError as exc:
            raise config.ConfigError(str(exc)) from None
        cfg = config.load(args.config, [*overrides, f"learner.audio_bind={audio}",
                                        f"learner.embeddings_bind={embeddings}", f"learner.metrics_port={metrics}"])
    from streamssl.serving.daemon import LearnerDaemon, install_signal_handlers

    daemon = LearnerDaemon(cfg)
    install_signal_handlers(daemon)
    return daemon.run()
