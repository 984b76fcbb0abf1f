"""``streamssl eval``: linear-probe a checkpoint against pooled log-mel and random init."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamssl.cli import add_config_arguments
from streamssl.config import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint file or checkpoint directory (newest is used)")
    p.add_argument("--data", required=True, help="labelled set, e.g. from `streamssl data speech`")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the probe and the random-init model")
    p.add_argument("--json", dest="json_path", help="write the report here")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    add_config_arguments(p)  # overrides apply on top of the checkpoint's own config


def run(args: argparse.Namespace) -> int:
    from streamssl import config
    from streamssl.learning import checkpoint
    from streamssl.learning.device import resolve_device
    from streamssl.evaluation.dataset import load_labelled
    from streamssl.evaluation.probe import evaluate, learner_embedder, pooled_logmel, print_report
    from streamssl.learning.learner import OnlineLearner

    try:
        data = load_labelled(args.data)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"--data {args.data}: {exc}") from None
    if not Path(args.checkpoint).exists():
        raise ConfigError(f"--checkpoint {args.checkpoint}: does not exist")
    device = str(resolve_device(args.device))
    cfg = config.load(args.config, args.overrides) if (args.config or args.overrides) else None
    trained = checkpoint.learner_from_checkpoint(args.checkpoint, device=device, cfg=cfg)
    cfg = trained.cfg
    # Same architecture and config, a different seed, never updated.
    random_cfg = config.load(None, [])
    for section in config.SECTIONS:
        setattr(random_cfg, section, getattr(cfg, section))
    random_cfg.learner = type(cfg.learner)(**{**cfg.learner.__dict__, "seed": cfg.learner.seed + 1 + args.seed})
    untrained = OnlineLearner(random_cfg, device=device)
    report = evaluate(
        data,
        {
            "ssl": learner_embedder(trained),
            "logmel": lambda audio: pooled_logmel(cfg, audio),
            "random": learner_embedder(untrained),
        },
        sample_rate=cfg.features.sample_rate, seed=args.seed, checkpoint=str(args.checkpoint), model_step=trained.step,
    )
    print_report(report)
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return 0
