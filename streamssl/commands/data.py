"""``streamssl data speech``: generate a labelled speech set for ``streamssl eval``."""

from __future__ import annotations

import argparse
import json
import time

from streamssl.config import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from streamssl.evaluation.dataset import DEFAULT_REPEATS, DEFAULT_SPEAKERS, VOICE_SETS

    sub = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    speech = sub.add_parser("speech", help="held-out real voices (or espeak-ng variants) x words, a channel each")
    speech.add_argument("--out", required=True, help="output directory (DIR/<speaker>/<word>/<n>.wav)")
    speech.add_argument("--voices", choices=VOICE_SETS, default="heldout",
                        help="heldout (default): real people the training stream never plays "
                             "(streamssl/capture/voices.py), each with a fixed base pitch and rate; "
                             "espeak: the original espeak-ng variants with pitch and rate drawn per utterance")
    speech.add_argument("--speakers", type=int, default=None,
                        help=f"number of speakers (heldout: the first N of 24 in a gender-balanced order, "
                             f"default {DEFAULT_SPEAKERS['heldout']}; espeak: 1..40, "
                             f"default {DEFAULT_SPEAKERS['espeak']})")
    speech.add_argument("--words", type=int, default=10, help="number of vocabulary words (1..20)")
    speech.add_argument("--repeats", type=int, default=None,
                        help=f"utterances per speaker and word (default {DEFAULT_REPEATS['heldout']} for heldout, "
                             f"{DEFAULT_REPEATS['espeak']} for espeak)")
    speech.add_argument("--sample-rate", type=int, default=16000)
    speech.add_argument("--seed", type=int, default=0, help="seed for voices, per-utterance rate, pitch and channel")
    speech.add_argument("--no-channel", action="store_true",
                        help="no random band limit and coloured noise per utterance (level and white noise only)")


def run(args: argparse.Namespace) -> int:
    from streamssl.evaluation.dataset import LABELS_FILE, generate_speech

    start = time.perf_counter()
    try:
        data = generate_speech(
            args.out, voices=args.voices, speakers=args.speakers, words=args.words, repeats=args.repeats,
            sample_rate=args.sample_rate, seed=args.seed, channel=not args.no_channel,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    took = time.perf_counter() - start
    meta = json.loads((data.root / LABELS_FILE).read_text())
    n, speakers = len(data.utterances), meta["speakers"]
    real = sum(bool(s["real_person"]) for s in speakers)
    who = (f"{real} real held-out persons" + (f" + {len(speakers) - real} synthetic fill-ins" if real < len(speakers)
                                              else "") + f" ({', '.join(meta['engines'])})"
           if args.voices == "heldout" else "espeak-ng variants")
    print(
        f"wrote {n} utterances ({len(speakers)} speakers x {len(meta['words'])} words x {meta['repeats']} repeats; "
        f"{who}) to {data.root} in {took:.1f} s ({1000 * took / n:.0f} ms each)"
    )
    return 0
