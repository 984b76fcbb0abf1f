"""What each part of the learning recipe buys: train on streamed speech, probe the readout.

For each recipe (a set of config overrides), trains a fresh ``OnlineLearner`` one update
per 500 ms window of ``SpeechSource(seed)`` (the embedded default stream), then probes
the trained readout, the same architecture at random init (same normalised input) and
pooled log-mel on a channel-varied labelled set with transfer splits (speaker on unseen
words, word on unseen speakers), mean ± std over split seeds, plus effective rank. The
random-init row pools ``--random-inits`` networks (3 by default; mean ± std over networks
x split seeds, each network's mean in the JSON's ``run_means``).
Prints a table and writes JSON; asserts nothing.

    .venv/bin/python bench/quality_ablation.py --config tests/configs/small.toml --windows 800 \\
        --recipe today --recipe recipe --out bench/quality_ablation.json

Recipes: ``today`` (the objectives before the quality work: mild views, APC on its own
input, CPC on its own view with batch negatives, MoCo crops of one window, no
decorrelation), ``recipe`` (the defaults), one recipe per change switched back to its
old setting, ``before-decorrelation`` (the recipe before clean CPC targets with batch
negatives and the decorrelation term), the recipe with a minGRU context (one and two
layers) in place of the GRU, and any recipe of your own with
``--set NAME:section.field=value,...``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from streamssl import config  # noqa: E402
from streamssl.evaluation.dataset import generate_speech  # noqa: E402
from streamssl.evaluation.probe import (  # noqa: E402
    effective_rank, learner_embedder, linear_probe, pooled_logmel, random_init_like, transfer_split,
)
from streamssl.evaluation.reference import learn_online, recorded_speech  # noqa: E402
from streamssl.learning.learner import OnlineLearner  # noqa: E402

OLD = {
    "augment": "objectives.augment=mild", "apc": "objectives.apc_target=input",
    "cpc": "objectives.cpc_target=view", "moco": "objectives.moco_positive=crop",
    "decorrelation": "objectives.decorrelation_weight=0",
}
SEQUENCE_CPC = ["objectives.cpc_negatives_from=sequence", "objectives.cpc_target=view"]
RECIPES = {
    "today": list(OLD.values()),
    "recipe": [],
    "no-channel-views": [OLD["augment"]],
    "no-clean-apc": [OLD["apc"]],
    "no-clean-cpc": [OLD["cpc"]],
    "sequence-cpc": SEQUENCE_CPC,
    "no-decorrelation": [OLD["decorrelation"]],
    "before-decorrelation": SEQUENCE_CPC + [OLD["decorrelation"]],
    "no-adjacent-moco": [OLD["moco"]],
    "diverse-replay": ["learner.replay_policy=diverse"],
    "mingru": ["model.context=mingru"],  # the recipe with a parallel-scan context
    "mingru-2": ["model.context=mingru", "model.context_layers=2"],
}


def train(cfg, windows: int, seed: int) -> OnlineLearner:
    learner = OnlineLearner(cfg, device="cpu")
    learn_online(learner, recorded_speech(seed, windows / 2, 16000))
    return learner


def probe_set() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The channel-varied probe set every bench of the recipe scores on: 8 espeak-ng voices x 10
    words x 6 repeats (seed 1; the original set, so the results in RESULTS.md compare), as clips
    at 16 kHz with their speaker and word labels. bench/speakers.py probes the held-out people."""
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_speech(tmp, voices="espeak", speakers=8, words=10, repeats=6, seed=1, workers=2)
        audio = data.load_audio(16000)
    return audio, np.asarray(data.labels("speaker")), np.asarray(data.labels("word"))


def probe(x, speaker, word, seeds) -> dict:
    """Speaker (across words) and word (across speakers) accuracy, mean and std over split seeds, and effective rank."""
    return {"speaker": scores(x, speaker, word, seeds), "word": scores(x, word, speaker, seeds),
            "effective_rank": effective_rank(x)}


def scores(x, labels, across, seeds) -> tuple[float, float]:
    acc = accuracies(x, labels, across, seeds)
    return float(np.mean(acc)), float(np.std(acc))


def accuracies(x, labels, across, seeds) -> list[float]:
    return [linear_probe(x, labels, *transfer_split(across, s), s) for s in seeds]


def probe_random_inits(learner, audio, speaker, word, seeds, networks: int) -> dict:
    """``probe`` of ``networks`` random inits of the learner's architecture (its normaliser), pooled.

    One random network is one draw: their speaker means spread by about 0.03, as much as
    the gains being judged (``streamssl eval --random-inits`` pools them for the same reason).
    So the row's mean and std are over networks x split seeds, as in ``streamssl eval``;
    ``run_means`` keeps each network's mean and ``effective_rank`` is their mean.
    """
    acc = {"speaker": [], "word": []}
    ranks = []
    for run in range(networks):
        x = learner_embedder(random_init_like(learner, run=run))(audio)
        acc["speaker"].append(accuracies(x, speaker, word, seeds))
        acc["word"].append(accuracies(x, word, speaker, seeds))
        ranks.append(effective_rank(x))
    r = {k: (float(np.mean(v)), float(np.std(v))) for k, v in acc.items()}
    return r | {"effective_rank": float(np.mean(ranks)), "networks": networks,
                "run_means": {k: [float(np.mean(a)) for a in v] for k, v in acc.items()}}


def add_random_inits(p: argparse.ArgumentParser) -> None:
    """The ``--random-inits N`` option of every bench with a random-init row (``probe_random_inits``)."""

    def at_least_one(text: str) -> int:
        n = int(text)
        if n < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
        return n

    p.add_argument("--random-inits", type=at_least_one, default=3, metavar="N",
                   help="random networks pooled in the random-init row (default 3)")


def add_recipe_arguments(p: argparse.ArgumentParser, recipes: dict[str, list[str]]) -> None:
    """``--recipe NAME`` (repeatable, default all) and ``--set NAME:OVERRIDES`` of the recipe benches."""
    p.add_argument("--recipe", action="append", choices=tuple(recipes), help="default: all")
    p.add_argument("--set", action="append", default=[], metavar="NAME:OVERRIDES",
                   help="a recipe of your own: NAME:section.field=value,... (repeatable)")


def recipe_order(args: argparse.Namespace, recipes: dict[str, list[str]]) -> list[str]:
    """The recipes to run, in order: the named ones, then the user's own (added to ``recipes``)."""
    for spec in args.set:
        name, _, overrides = spec.partition(":")
        recipes[name] = [o for o in overrides.split(",") if o]
    return (args.recipe or []) + [spec.partition(":")[0] for spec in args.set] or list(recipes)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tests/configs/small.toml")
    p.add_argument("--windows", type=int, default=800, help="500 ms windows of streamed speech to learn from")
    p.add_argument("--seeds", type=int, default=5, help="probe split seeds")
    p.add_argument("--stream-seed", type=int, default=0)
    add_recipe_arguments(p, RECIPES)
    add_random_inits(p)
    p.add_argument("--out", default="bench/quality_ablation.json")
    args = p.parse_args()
    order = recipe_order(args, RECIPES)
    torch.set_num_threads(1)
    seeds = range(args.seeds)
    audio, speaker, word = probe_set()
    results = {}
    print(f"{'recipe':18s} {'row':8s} {'speaker':>14s} {'word':>14s} {'eff. rank':>9s}")
    for name in order:
        cfg = config.load(args.config, RECIPES[name])
        learner = train(cfg, args.windows, args.stream_seed)
        rows = {"trained": probe(learner_embedder(learner)(audio), speaker, word, seeds)}
        if name == order[0]:  # baselines once: they do not depend on the recipe
            rows["random"] = probe_random_inits(learner, audio, speaker, word, seeds, args.random_inits)
            rows["logmel"] = probe(pooled_logmel(cfg, audio), speaker, word, seeds)
        for row, r in rows.items():
            results[f"{name}/{row}"] = r
            print(f"{name:18s} {row:8s} {r['speaker'][0]:.3f}±{r['speaker'][1]:.3f} {r['word'][0]:.3f}±{r['word'][1]:.3f}"
                  f" {r['effective_rank']:9.1f}", flush=True)
    with open(args.out, "w") as f:
        json.dump({"config": args.config, "windows": args.windows, "seeds": list(seeds), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
