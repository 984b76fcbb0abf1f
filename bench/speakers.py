"""Does learning on a conversation teach *who speaks*? Speaker and word on people never heard.

For each recipe (config overrides), a fresh ``OnlineLearner`` learns one update per 500 ms
window of the embedded default stream (``SpeechSource(seed)``: real people's voices taking
turns of 5-60 s, a microphone and room per session; ``--stream sentences`` for the older
stream with a new espeak-ng voice every sentence), then its readout (what ``embed
--per-file`` gives) is probed on the held-out set of ``streamssl data speech`` (24 people
the stream never plays x 10 words x 4 repeats, a random channel per utterance), with
transfer splits: speaker on unseen words, word on unseen speakers. Baselines, probed
once: ``--random-inits`` random networks of the same architecture (pooled, the learner's
normaliser), pooled log-mel, pooled MFCC with deltas. Prints a table, writes JSON,
asserts nothing.

    .venv/bin/python bench/speakers.py --minutes 10 --recipe recipe --recipe continuity-4
    .venv/bin/python bench/speakers.py --config configs/default.toml --minutes 20

Recipes: ``recipe`` (the defaults), ``continuity-2`` / ``continuity-4`` / ``continuity-5``
(MoCo's continuity positives within that horizon, ``objectives.moco_horizon_s``), ``moco-x2``
(MoCo's weight doubled with a 4-s horizon), and any of your own with
``--set NAME:section.field=value,...``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from quality_ablation import (  # noqa: E402
    add_random_inits, add_recipe_arguments, probe, probe_random_inits, recipe_order,
)

from streamssl import config  # noqa: E402
from streamssl.evaluation.dataset import generate_speech  # noqa: E402
from streamssl.evaluation.probe import learner_embedder, pooled_logmel, pooled_mfcc  # noqa: E402
from streamssl.evaluation.reference import learn_online, recorded_speech  # noqa: E402
from streamssl.learning.learner import OnlineLearner  # noqa: E402

RECIPES = {
    "recipe": [],
    "continuity-2": ["objectives.moco_horizon_s=2"],
    "continuity-4": ["objectives.moco_horizon_s=4"],
    "continuity-5": ["objectives.moco_horizon_s=5"],
    "moco-x2": ["objectives.moco_horizon_s=4", "objectives.moco_weight=2"],
}


def heldout_set(seed: int = 1) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """``streamssl data speech``'s default set (held-out people) as clips with speaker and word labels."""
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_speech(tmp, seed=seed, workers=2)
        audio = data.load_audio(16000)
    return audio, np.asarray(data.labels("speaker")), np.asarray(data.labels("word"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tests/configs/small.toml")
    p.add_argument("--minutes", type=float, default=10.0, help="minutes of the stream to learn from")
    p.add_argument("--stream", default="turns", choices=("turns", "sentences"))
    p.add_argument("--stream-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=5, help="probe split seeds")
    add_recipe_arguments(p, RECIPES)
    add_random_inits(p)
    p.add_argument("--out", default="bench/speakers.json")
    args = p.parse_args()
    order = recipe_order(args, RECIPES)
    torch.set_num_threads(1)
    seeds = range(args.seeds)
    t0 = time.monotonic()
    audio, speaker, word = heldout_set()
    stream = recorded_speech(args.stream_seed, args.minutes * 60, 16000, args.stream)
    print(f"held-out set: {len(audio)} clips, {len(set(speaker))} speakers, {len(set(word))} words; "
          f"{args.minutes:g} min of the {args.stream} stream; ready in {time.monotonic() - t0:.0f} s", flush=True)
    results = {}
    print(f"{'recipe':16s} {'row':8s} {'speaker':>14s} {'word':>14s} {'eff. rank':>9s} {'s':>6s}")
    for name in order:
        t = time.monotonic()
        cfg = config.load(args.config, RECIPES[name])
        learner = OnlineLearner(cfg, device="cpu")
        learn_online(learner, stream)
        rows = {"trained": probe(learner_embedder(learner)(audio), speaker, word, seeds)}
        if name == order[0]:  # baselines once: they do not depend on the recipe
            rows["random"] = probe_random_inits(learner, audio, speaker, word, seeds, args.random_inits)
            rows["logmel"] = probe(pooled_logmel(cfg, audio), speaker, word, seeds)
            rows["mfcc"] = probe(pooled_mfcc(cfg, audio), speaker, word, seeds)
        for row, r in rows.items():
            results[f"{name}/{row}"] = r
            print(f"{name:16s} {row:8s} {r['speaker'][0]:.3f}±{r['speaker'][1]:.3f} {r['word'][0]:.3f}±{r['word'][1]:.3f}"
                  f" {r['effective_rank']:9.1f} {time.monotonic() - t:6.0f}", flush=True)
    with open(args.out, "w") as f:
        json.dump({"config": args.config, "minutes": args.minutes, "stream": args.stream,
                   "stream_seed": args.stream_seed, "seeds": list(seeds), "recipes": {k: RECIPES[k] for k in order},
                   "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
