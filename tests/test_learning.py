"""Learning makes the embedding better than its input and than the untrained network.

A loss can fall by learning a shortcut, so this test judges what a user gets: a linear
probe on the published readout. Setup:

* **Training**: the embedded default source, ``SpeechSource(seed=0)`` (espeak-ng, a random
  voice, rate, pitch and level per sentence, pauses), 300 s as ONE live stream cut into
  500 ms int16 windows, one ``update`` per window: 600 steps of the small test model with
  every objective on and the default recipe (channel views, clean APC and CPC targets,
  CPC negatives from the batch, adjacent MoCo positives, the decorrelation term).
* **Probe set**: ``streamssl data speech``'s generator, 8 voices x 8 words x 3 repeats,
  each utterance through its own random channel (band limit, coloured noise, gain).
  Word accuracy is scored on *transfer* splits: the probe trains on 4 voices and is
  tested on the 4 others, 3 split seeds.
* **Rows**: the trained learner's readout; the same architecture at random init (another
  seed) reading the same normalised input; pooled log-mel mean+std.

Thresholds, fixed before the run from what the probe's own noise is:

* The split-to-split standard deviation of word accuracy on such sets is 0.03-0.06 for
  every row, trained or not (it is the probe's noise, not the model's). The rows share
  the same splits, so the comparison is paired: on *every* seed the trained row must
  beat both baselines, and its mean must beat the better baseline's mean by >= 0.05 —
  about one split std, which a lucky draw of 3 paired splits does not produce.
* Effective rank (RankMe) of the trained embedding on the probe set must be at least the
  random-init network's (the issue's target). Training lowered it before the
  decorrelation term (165 vs 187 on the default model); the term exists to keep every
  direction alive, and on the default model it gave 206-282 against 186-187 in every
  run (weights 0.1 to 5).
  A model that collapsed onto a few directions (first PC 77 % of the variance, the
  failure this project had) falls far below either.
* Speaker accuracy is printed, not asserted: the trained readout is level with the
  random-init network on speaker, not above it by a margin (see bench/RESULTS.md); a
  test that claimed a margin would be false.
* Training loss: CPC mean of the last 100 steps < 0.9 x the mean of the first 20. With
  negatives from other examples (other speakers) and clean targets its task is harder
  than it was with same-example negatives, so it falls slower; a learner that learns
  nothing keeps the ratio at 1 within the noise of a 20-step mean (step noise ~10 %, so
  ~2 %), and 0.9 is five times that away. APC is printed only:
  it now predicts clean, level-free frames from a view whose channel it cannot see, so
  most of its error is irreducible and its curve is flat by design.

Everything is seeded and runs on one torch thread; run with ``-s`` for the table.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamssl import config
from streamssl.evaluation.dataset import generate_speech
from streamssl.evaluation.probe import (
    effective_rank, learner_embedder, linear_probe, pooled_logmel, random_init_like, transfer_split,
)
from streamssl.evaluation.reference import learn_online, recorded_speech
from streamssl.learning.learner import OnlineLearner
from support import REPO

RATE = 16000
WINDOW = RATE // 2
STEPS = 600
SEEDS = (0, 1, 2)
MARGIN = 0.05


@pytest.fixture(scope="module")
def probe_set(tmp_path_factory):
    data = generate_speech(tmp_path_factory.mktemp("probe"), speakers=8, words=8, repeats=3, seed=1, workers=2)
    return data.load_audio(RATE), np.asarray(data.labels("speaker")), np.asarray(data.labels("word"))


def _train() -> tuple[OnlineLearner, dict[str, np.ndarray]]:
    learner = OnlineLearner(config.load(REPO / "tests" / "configs" / "small.toml"), device="cpu")
    steps = learn_online(learner, recorded_speech(0, STEPS * WINDOW / RATE, RATE))
    assert len(steps) == STEPS and not any(s.skipped for s in steps), "every step taken"
    return learner, {k: np.asarray([s.losses[k] for s in steps]) for k in ("apc", "cpc", "moco")}


def _scores(x: np.ndarray, labels: np.ndarray, across: np.ndarray) -> np.ndarray:
    return np.array([linear_probe(x, labels, *transfer_split(across, s), s) for s in SEEDS])


@pytest.mark.slow
def test_trained_embeddings_beat_log_mel_and_random_init_on_unseen_speakers(probe_set, one_torch_thread):
    audio, speaker, word = probe_set
    learner, curves = _train()
    rows = {
        "trained": learner_embedder(learner)(audio),
        "random": learner_embedder(random_init_like(learner))(audio),
        "logmel": pooled_logmel(learner.cfg, audio),
    }
    word_acc = {r: _scores(x, word, speaker) for r, x in rows.items()}
    speaker_acc = {r: _scores(x, speaker, word) for r, x in rows.items()}
    rank = {r: effective_rank(x) for r, x in rows.items()}
    print(f"\nlearning: {STEPS} steps on {STEPS // 2} s of streamed speech; probe {len(audio)} utterances, seeds {SEEDS}")
    for r in rows:
        print(f"  {r:8s} word {word_acc[r].mean():.3f} ± {word_acc[r].std():.3f} {np.round(word_acc[r], 3)}"
              f"  speaker {speaker_acc[r].mean():.3f} ± {speaker_acc[r].std():.3f}  eff. rank {rank[r]:.1f}")
    for k in ("apc", "cpc"):
        print(f"  train {k}: first-20 {curves[k][:20].mean():.3f} last-100 {curves[k][-100:].mean():.3f}")

    for baseline in ("random", "logmel"):
        assert (word_acc["trained"] > word_acc[baseline]).all(), f"trained must win every split against {baseline}"
        assert word_acc["trained"].mean() >= word_acc[baseline].mean() + MARGIN, baseline
    assert rank["trained"] >= rank["random"], f"training lost directions the untrained network has: {rank}"
    assert curves["cpc"][-100:].mean() < 0.9 * curves["cpc"][:20].mean(), "training CPC did not fall"
