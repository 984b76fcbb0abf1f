"""How far could a speaker signal take this model on this probe? A supervised ceiling for #10.

The self-supervised recipe leaves speaker accuracy level with random init. Before blaming
the objective, this asks whether the architecture, the readout and the probe could show
more at all: the default backbone is trained *with* the labels a self-supervised learner
never has, which voice speaks (40-way cross-entropy on the published readout), on
sentences like the speech stream's (its vocabulary and 40 voices, a random rate, pitch
and level per sentence), through the learner's own channel views, with the batch of one
live step (1 new + ``replay_per_step`` replayed examples) and as many steps as
``--steps``. Then it is probed exactly like ``quality_ablation.py`` (the probe set's 8
voices are among the 40; the random row pools ``--random-inits`` networks). Every draw
is seeded, the head's initial weights included, so a rerun repeats the table. Prints a
table and writes JSON; asserts nothing.

    .venv/bin/python bench/speaker_oracle.py --config configs/default.toml --steps 800 [--batch 40]

With ``--stream conversation --minutes M`` it is the ceiling for the conversation stream
instead: the examples are 1-s crops of the first M minutes of ``SpeechSource(seed=0)``
that lie inside one turn of one person (labels from ``conversation_plan``, which the stream
follows exactly), the label is that person (the training side's people), and the probe is
``bench/speakers.py``'s: the 24 held-out people the stream never plays, with log-mel and
MFCC rows beside it.

The readout's std has an infinite gradient where a feature is constant over a segment,
so the head reads the same statistics with a small floor under the variance.
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from quality_ablation import add_random_inits, probe, probe_random_inits, probe_set  # noqa: E402
from streamssl import config  # noqa: E402
from streamssl.capture.espeak import VOICES, synthesize  # noqa: E402
from streamssl.capture.sources.speech import WORDS  # noqa: E402
from streamssl.evaluation.probe import learner_embedder  # noqa: E402
from streamssl.learning.learner import OnlineLearner  # noqa: E402
from streamssl.learning import readout  # noqa: E402


def sentences(n: int, seed: int, rate: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` sentences as the speech stream draws them, and the index of the voice of each."""
    rng = np.random.default_rng(seed)
    jobs = [(" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))), int(rng.integers(len(VOICES))),
             int(rng.integers(120, 220)), int(rng.integers(20, 80)), float(rng.uniform(0.3, 0.9))) for _ in range(n)]

    def speak(job):
        text, voice, wpm, pitch, gain = job
        x = synthesize(text, voice=VOICES[voice], sample_rate=rate, words_per_minute=wpm, pitch=pitch)
        return (x * (gain / max(float(np.abs(x).max()), 1e-6))).astype(np.float32)

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(speak, jobs)), np.array([job[1] for job in jobs])


VAR_FLOOR = 1e-4  # under the readout's std while the cross-entropy trains through it (readout.stats_pool)


def conversation_examples(minutes: float, rate: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The first ``minutes`` of the conversation, a per-sample (person index, turn) label (-1 where
    no one person speaks), and how many people it holds."""
    from streamssl.capture.sources.conversation import conversation_plan
    from streamssl.evaluation.reference import recorded_speech

    audio = recorded_speech(0, minutes * 60, rate, "turns")
    people: dict[str, int] = {}
    who = np.full(len(audio), -1)
    turn = np.full(len(audio), -1)
    for seg in conversation_plan(0, minutes * 60, rate):
        if seg.kind == "speech" and seg.speaker is not None:
            who[seg.start:seg.end] = people.setdefault(seg.speaker, len(people))
            turn[seg.start:seg.end] = seg.turn if seg.turn is not None else -1
    return audio, who, turn, len(people)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/default.toml")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch", type=int, default=0, help="examples per step (default: 1 + learner.replay_per_step)")
    p.add_argument("--sentences", type=int, default=1200)
    p.add_argument("--seeds", type=int, default=5, help="probe split seeds")
    p.add_argument("--stream", default="sentences", choices=("sentences", "conversation"))
    p.add_argument("--minutes", type=float, default=30.0, help="--stream conversation: minutes to draw crops from")
    add_random_inits(p)
    p.add_argument("--out", default="bench/speaker_oracle.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = config.load(args.config, [])
    batch = args.batch or 1 + cfg.learner.replay_per_step
    learner = OnlineLearner(cfg, device="cpu")
    core = learner.core
    n = core.example_samples
    if args.stream == "conversation":
        stream, who, turn, classes = conversation_examples(args.minutes, cfg.features.sample_rate, n)
        # a crop is one person's when its first, middle and last sample are in one turn of theirs
        starts = np.arange(0, len(stream) - n, cfg.features.sample_rate // 10)
        ok = (who[starts] >= 0) & (who[starts] == who[starts + n - 1]) & (who[starts] == who[starts + n // 2]) & (
            turn[starts] == turn[starts + n - 1])
        starts = starts[ok]
        print(f"conversation: {args.minutes:g} min, {classes} people, {len(starts)} one-person crops", flush=True)
    else:
        utterances, voice = sentences(args.sentences, 0, cfg.features.sample_rate)
        classes = len(VOICES)
    with torch.random.fork_rng(devices=[]):  # the head's init from the learner's seed: a rerun repeats the table
        torch.manual_seed(cfg.learner.seed)
        head = torch.nn.Linear(core.dim, classes)
    optimizer = torch.optim.AdamW([*core.backbone.parameters(), *head.parameters()], lr=cfg.learner.lr,
                                  weight_decay=cfg.learner.weight_decay)
    rng, g = np.random.default_rng(1), torch.Generator().manual_seed(1)
    for step in range(args.steps):
        if args.stream == "conversation":
            picked = starts[rng.integers(0, len(starts), batch)]
            crops, labels = [stream[s:s + n] for s in picked], who[picked]
        else:
            idx = rng.integers(0, len(utterances), batch)
            crops, labels = [], voice[idx]
            for i in idx:
                u = np.pad(utterances[i], (0, max(0, n + 1 - len(utterances[i]))))
                start = int(rng.integers(0, len(u) - n))
                crops.append(u[start:start + n])
        audio = torch.from_numpy(np.stack(crops))
        with torch.no_grad():
            mel = core.logmel(audio)  # the clean input's frames: its statistics and the readout's energy gate
            core.normaliser.update(mel)  # input statistics, as the learner folds in new frames
        view = core.views.view(audio, g)
        z, c, _ = core.backbone(view)
        loss = F.cross_entropy(head(readout.pool(z, c, mel, VAR_FLOOR)), torch.from_numpy(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  cross-entropy {loss.item():.3f}", flush=True)
    if args.stream == "conversation":
        from speakers import heldout_set

        from streamssl.evaluation.probe import pooled_logmel, pooled_mfcc

        audio, speaker, word = heldout_set()
    else:
        audio, speaker, word = probe_set()
    seeds = range(args.seeds)
    rows = {"supervised": probe(learner_embedder(learner)(audio), speaker, word, seeds),
            "random": probe_random_inits(learner, audio, speaker, word, seeds, args.random_inits)}
    if args.stream == "conversation":
        rows["logmel"] = probe(pooled_logmel(cfg, audio), speaker, word, seeds)
        rows["mfcc"] = probe(pooled_mfcc(cfg, audio), speaker, word, seeds)
    print(f"\n{'row':12s} {'speaker':>14s} {'word':>14s} {'eff. rank':>9s}   ({args.steps} steps of {batch})")
    for row, r in rows.items():
        print(f"{row:12s} {r['speaker'][0]:.3f}±{r['speaker'][1]:.3f} {r['word'][0]:.3f}±{r['word'][1]:.3f}"
              f" {r['effective_rank']:9.1f}")
    with open(args.out, "w") as f:
        json.dump({"config": args.config, "steps": args.steps, "batch": batch, "stream": args.stream,
                   "sentences": args.sentences, "minutes": args.minutes, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
