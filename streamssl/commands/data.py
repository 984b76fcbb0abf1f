"""``streamssl data speech``: generate a labelled speech set for ``streamssl eval``."""

from __future__ import annotations

import argparse
import time

from streamssl.config import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    speech = sub.add_parser("speech", help="espeak-ng voices x words, varied rate and pitch")
    speech.add_argument("--out", required=True, help="output directory (DIR/<speaker>/<word>/<n>.wav)")
    speech.add_argument("--speakers", type=int, default=8, help="number of voices (1..40)")
    speech.add_argument("--words", type=int, default=10, help="number of vocabulary words (1..20)")
    speech.add_argument("--repeats", type=int, default=10, help="utterances per speaker and word")
    speech.add_argument("--sample-rate", type=int, default=16000)
    speech.add_argument("--seed", type=int, default=0, help="seed for per-utterance rate and pitch")
    speech.add_argument("--no-channel", action="store_true",
                        help="no random band limit and coloured noise per utterance (level and white noise only)")


def run(args: argparse.Namespace) -> int:
    from streamssl.evaluation.dataset import generate_speech

    start = time.perf_counter()
    try:
        data = generate_speech(
            args.out, speakers=args.speakers, words=args.words, repeats=args.repeats,
            sample_rate=args.sample_rate, seed=args.seed, channel=not args.no_channel,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    took = time.perf_counter() - start
    n = len(data.utterances)
    print(
        f"wrote {n} utterances ({args.speakers} speakers x {args.words} words x {args.repeats} repeats) "
        f"to {data.root} in {took:.1f} s ({1000 * took / n:.0f} ms each)"
    )
    return 0
