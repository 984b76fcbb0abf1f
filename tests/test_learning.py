"""Learning actually happens: generated speech fed chunk by chunk makes every loss fall.

Setup: ~150 s of espeak-ng speech (6 voices, 40 sentences, random pauses and levels)
as ONE live stream, cut into 500 ms windows exactly as the capture would (int16), one
``update`` per window (small model, all three objectives on), ~300 steps. Held-out
speech (other voices and sentences) measures the embedding spread before and after.

Thresholds and why:

* Training curve, APC and CPC: mean of the last 20 steps < 0.8 x mean of the first 5.
  Both start at their untrained values (APC: L1 of a random linear head against
  unit-variance frames; CPC: about log(1 + 16 negatives) = 2.83) and a model that learns
  anything about speech cuts them by far more than 20 %; step-to-step noise (replay
  draws, augmentations) is ~10 %, so 20 % between 20-step means is not noise.
* MoCo has no usable step-0 value on the training curve: the queue starts empty
  (unwritten slots are masked, so the loss is 0 at step 0) and the loss then *grows*
  with the number of negatives as the queue fills; by the time it is full (64 steps
  here) the model has already learned most of the easy positive, so the curve is flat
  after that. So every loss, MoCo included, is also measured with
  ``learner.evaluate`` on the same fixed held-out clips (1 s, other voices and
  sentences) with the same augmentation draws before training and after; MoCo there
  uses the other clips as negatives (no queue), so both values have the same
  negatives. Bound: after < 0.8 x before for APC and CPC (generalising to unseen voices,
  not only fitting the stream); for MoCo after < 0.92 x before. MoCo's bound is looser
  because its in-batch negatives here are hard: 24 consecutive 1 s clips of 3 voices, so
  neighbours share speaker and utterance, and the untrained value is already at chance
  (log 24 = 3.18); measured 3.09 -> 2.67 (-0.43 nats, the positive's softmax mass x1.5).
  Everything is seeded and runs on one thread, so the values are reproducible.
* Collapse: per-dimension std of the L2-normalised pooled embeddings of the held-out
  clips (``embed_segments``), averaged over dimensions, must stay > 0.01 -- the
  ``StreamsslCollapse`` alert floor (an isotropic 48-d unit vector would give ~0.14; a
  collapsed model gives ~0) -- and must not fall below half its value at step 0.

The steps run with one torch thread: on the 2-core CI machine with other tests running
in parallel, two OpenMP threads spin against each other (~50x slower per step).

Run with ``-s`` to see the curve's start/end values; they are also written to
/tmp/streamssl-learning-curve.txt.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamssl import config
from streamssl.capture.espeak import VOICES, SpeechUnavailable, synthesize
from streamssl.learning.learner import OnlineLearner
from streamssl.wire import AudioWindow

RATE = 16000
WINDOW = RATE // 2  # 500 ms, the capture default
CURVE_FILE = "/tmp/streamssl-learning-curve.txt"
QUEUE = 64
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.", "She sells sea shells by the sea shore.",
    "Bright morning light filled the quiet kitchen.", "Please call Stella and ask her to bring these things.",
    "Six spoons of fresh snow peas and five thick slabs of blue cheese.", "We also need a small plastic snake.",
    "The river ran cold and clear under the old stone bridge.", "A big toy frog for the kids.",
    "Numbers like seventeen and forty two are easy to remember.", "The train to the north leaves at half past nine.",
    "My grandmother grew tomatoes, beans and sweet yellow corn.", "Turn left at the church and walk for ten minutes.",
    "Thunder rolled across the valley as the storm came closer.", "Could you read the last line once more, slowly?",
    "The committee will meet again on Thursday afternoon.", "Fresh bread smells wonderful early in the morning.",
    "He tied the boat to the dock and climbed the ladder.", "Every winter the lake freezes from the edges inward.",
    "Her violin sang a long, sad note in the empty hall.", "Keep the receipt in case the shoes do not fit.",
    "The engine coughed twice and then started at last.", "Owls hunt at night and sleep through most of the day.",
    "Paint the fence white before the rain arrives.", "A thousand tiny stars appeared above the desert.",
    "Rockets need a great deal of fuel to leave the ground.", "The museum opens at ten and closes at five.",
    "Wash your hands before you sit down to dinner.", "The children laughed at the clown's enormous shoes.",
    "Our neighbour plays the drums every Sunday evening.", "Gentle waves washed over the smooth grey pebbles.",
    "The detective examined the muddy footprints carefully.", "Autumn leaves drifted slowly onto the wet pavement.",
    "Most cats dislike water, but some enjoy a swim.", "The recipe calls for two cups of flour and an egg.",
    "Distant bells rang out across the sleeping town.", "Jupiter is the largest planet in our solar system.",
    "Never leave a candle burning in an empty room.", "The marathon runners crossed the finish line together.",
    "Heavy snow closed the mountain pass for a week.", "Whisper the password and the door will open.",
]
TRAIN_VOICES = [VOICES[i] for i in (0, 11, 19, 26, 34, 4)]  # en-us m1, en-gb f4, scotland f1, ...
HELD_OUT_VOICES = [VOICES[i] for i in (3, 14, 30)]


def _utterances(voices, sentences, seed, seconds):
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    while total < seconds * RATE:
        x = synthesize(sentences[int(rng.integers(len(sentences)))], voice=voices[int(rng.integers(len(voices)))],
                       words_per_minute=int(rng.integers(130, 190)), pitch=int(rng.integers(30, 70)))
        x = x * 10 ** (rng.uniform(-12, 0) / 20)  # speakers are not all equally loud
        pause = rng.standard_normal(int(rng.uniform(0.1, 0.6) * RATE)) * 10 ** (rng.uniform(-70, -50) / 20)
        parts += [x, pause.astype(np.float32)]
        total += len(x) + len(pause)
    audio = np.concatenate(parts)
    return np.clip(np.rint(audio * 32768), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def speech():
    try:
        train = _utterances(TRAIN_VOICES, SENTENCES[:32], seed=1, seconds=150)
        held = _utterances(HELD_OUT_VOICES, SENTENCES[32:], seed=2, seconds=24)
    except SpeechUnavailable as exc:  # pragma: no cover - CI installs espeak-ng and sox
        pytest.skip(str(exc))
    return train, held


def _clips(held: np.ndarray) -> np.ndarray:
    n = len(held) // RATE
    return held[: n * RATE].reshape(n, RATE).astype(np.float32) / 32768.0


def _spread(learner: OnlineLearner, clips: np.ndarray) -> float:
    e = learner.embed_segments(clips)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    return float(e.std(axis=0).mean())


def test_every_loss_falls_and_embeddings_do_not_collapse(speech, one_torch_thread):
    train, held = speech
    cfg = config.load("tests/configs/small.toml", [f"objectives.moco_queue={QUEUE}"])
    assert min(cfg.objectives.apc_weight, cfg.objectives.cpc_weight, cfg.objectives.moco_weight) > 0
    learner = OnlineLearner(cfg, device="cpu")
    clips = _clips(held)
    assert learner.window_samples == RATE and len(clips) >= 20
    spread_0 = _spread(learner, clips)
    eval_0 = learner.evaluate(clips, seed=0)

    curves: dict[str, list[float]] = {"apc": [], "cpc": [], "moco": [], "total": []}
    n_windows = len(train) // WINDOW
    for seq in range(n_windows):
        pcm = train[seq * WINDOW : (seq + 1) * WINDOW]
        w = AudioWindow("speech", seq, int((seq + 1) * 0.5e9), RATE, pcm[:, None].copy())
        stats = learner.update([w])
        assert not stats.skipped, f"step {seq} skipped: {stats.losses}"
        for k in curves:
            curves[k].append(stats.losses[k])
    spread_1 = _spread(learner, clips)
    eval_1 = learner.evaluate(clips, seed=0)
    assert learner.step == n_windows >= 280
    assert learner.queue_fill == 1.0

    c = {k: np.asarray(v) for k, v in curves.items()}
    start = {k: c[k][:5].mean() for k in ("apc", "cpc")}
    end = {k: c[k][-20:].mean() for k in ("apc", "cpc")}
    lines = [f"learning: {n_windows} steps, one per 500 ms window ({n_windows / 2:.0f} s of espeak-ng speech, "
             f"{len(TRAIN_VOICES)} voices), small config, moco_queue={QUEUE}"]
    for k in ("apc", "cpc", "moco"):
        a, b = c[k][:5].mean(), c[k][-20:].mean()
        lines.append(f"  train {k:5s} first-5 {a:.4f}  last-20 {b:.4f}"
                     + (f"  (queue full at step {QUEUE}: steps {QUEUE}-{QUEUE + 4} {c[k][QUEUE:QUEUE + 5].mean():.4f})"
                        if k == "moco" else f"  ratio {b / a:.3f}"))
    for k in ("apc", "cpc", "moco"):
        lines.append(f"  held-out {k:5s} before {eval_0[k]:.4f}  after {eval_1[k]:.4f}  ratio {eval_1[k] / eval_0[k]:.3f}")
    lines.append(f"  spread (mean per-dim std of L2-normalised held-out embeddings): {spread_0:.4f} -> {spread_1:.4f}")
    text = "\n".join(lines)
    print("\n" + text)
    with open(CURVE_FILE, "w") as f:
        f.write(text + "\n")

    for k in start:
        assert end[k] < 0.8 * start[k], f"training {k} did not fall: {start[k]:.4f} -> {end[k]:.4f}"
    for k, bound in (("apc", 0.8), ("cpc", 0.8), ("moco", 0.92)):
        assert eval_1[k] < bound * eval_0[k], f"held-out {k} did not fall: {eval_0[k]:.4f} -> {eval_1[k]:.4f}"
    assert spread_1 > 0.01, f"embeddings collapsed: spread {spread_1:.4f}"
    assert spread_1 > spread_0 / 2, f"spread fell from {spread_0:.4f} to {spread_1:.4f}"
