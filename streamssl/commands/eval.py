"""``streamssl eval``: linear-probe a checkpoint against its baselines on transfer splits."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamssl.cli import add_config_arguments
from streamssl.config import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint file or checkpoint directory (newest is used)")
    p.add_argument("--data", required=True, help="labelled set, e.g. from `streamssl data speech`")
    p.add_argument("--seeds", type=int, default=3, help="split/probe seeds 0..N-1; mean ± std over them (default 3)")
    p.add_argument("--reference", type=int, nargs="?", const=1, default=0, metavar="N",
                   help="also train N offline references (default 1): the same model, steps and audio, "
                        "shuffled examples, each with its own order; the row pools the runs")
    p.add_argument("--random-inits", type=int, default=1, metavar="N",
                   help="random-init networks from N seeds (default 1); the row pools them")
    p.add_argument("--json", dest="json_path", help="write the report here")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    add_config_arguments(p)  # overrides apply on top of the checkpoint's own config


def run(args: argparse.Namespace) -> int:
    from streamssl import config
    from streamssl.evaluation.dataset import load_labelled
    from streamssl.evaluation.probe import (
        evaluate, learner_embedder, live_embedder, pooled_logmel, pooled_mfcc, print_report, random_init_like,
    )
    from streamssl.learning import checkpoint
    from streamssl.learning.device import resolve_device

    for flag, value, least in (("--seeds", args.seeds, 1), ("--reference", args.reference, 0),
                               ("--random-inits", args.random_inits, 1)):
        if value < least:
            raise ConfigError(f"{flag} {value}: must be >= {least}")
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
    rows = {
        "ssl": learner_embedder(trained),
        "live": live_embedder(trained, cfg.capture.window_ms, cfg.capture.dtype),
    }
    if args.reference:
        from streamssl.evaluation.reference import train_reference

        # Each run trains when the probe reaches it, so one reference model is held at a time.
        rows["offline"] = [
            lambda audio, run=run: learner_embedder(train_reference(trained, device=device, run=run))(audio)
            for run in range(args.reference)
        ]
    rows["random"] = [
        lambda audio, run=run: learner_embedder(random_init_like(trained, device, run=run))(audio)
        for run in range(args.random_inits)
    ]
    rows["logmel"] = lambda audio: pooled_logmel(cfg, audio)
    rows["mfcc"] = lambda audio: pooled_mfcc(cfg, audio)
    report = evaluate(
        data, rows, sample_rate=cfg.features.sample_rate, seeds=range(args.seeds),
        checkpoint=str(args.checkpoint), model_step=trained.step,
    )
    print_report(report)
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return 0

