"""The views one training step reads, built so that no objective can be solved by the channel.

A training example is the audio of one stream ending at a new window: with adjacent
MoCo positives (``objectives.moco_positive = "adjacent"``, the default) it holds the
``key_samples`` just before the window as well, so an example is ``key + window``.

- **query**: a random crop of the window (``moco_crop_fraction`` of it) through its own
  random view (``streamssl.learning.augment``). The online model reads it once; APC and
  CPC use its frames and MoCo pools it into the query.
- **APC target** (``apc_target = "clean"``): the same crop *without* augmentation,
  normalised, with the example's mean over time and bins removed. The input is
  corrupted, the target is not: carrying the view's gain or noise floor in c no longer
  lowers the loss, and neither does the clip's level.
- **CPC targets** (``cpc_target = "clean"``): the encoder frames z of that same clean,
  level-free crop, computed without gradient. CPC's predictions come from the corrupted
  query, its targets from audio no augmentation marked, so with negatives from other
  examples (the default) the positive cannot be found by its channel fingerprint; what
  tells it from another example's frame is what is said next and *who* says it.
- **MoCo key**: the audio just before the window, the same length as the query crop and
  not overlapping it, through another random view — two different segments of the same
  stream close in time (COLA, Saeed et al. 2021), so the pair shares the source (voice,
  instrument, room) but not the phones. A pair is used only when its span holds no pause
  (``PAUSE_S`` of frames below the readout's energy range), i.e. when both halves are
  most likely one utterance of one speaker rather than two sides of a turn change.
  With ``"crop"``, the key is a second crop of the window (the two then overlap).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streamssl.config import ObjectiveConfig
from streamssl.learning.augment import (
    channel_augment, crop_waveform, log_mixup_exp, mask_features, mild_augment,
)
from streamssl.learning.features import LogMel, Normaliser
from streamssl.learning.readout import ENERGY_RANGE_DB

PAUSE_S = 0.15  # a quieter run this long splits two utterances
PAUSE_FRAME_S = 0.02


@dataclass
class Views:
    """What the objectives of one step read (module docstring); features are normalised log-mel."""

    query: torch.Tensor  # (B, T, F)
    apc_target: torch.Tensor  # (B, T, F)
    clean: torch.Tensor | None  # (B, T, F) the query's crop without augmentation, level removed
    key: torch.Tensor | None  # (B, T', F) MoCo's key view, None without MoCo
    pair_valid: torch.Tensor | None  # (B,) bool, adjacent pairs only


def key_samples(o: ObjectiveConfig, window_samples: int) -> int:
    """Samples an example holds before its window: the key segment for adjacent positives, else 0."""
    return int(round(window_samples * o.moco_crop_fraction)) if o.moco_positive == "adjacent" else 0


def one_utterance(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(B, S) -> (B,) True where no run of ``PAUSE_S`` of 20 ms frames lies below the loudest frame's energy range."""
    hop = max(1, int(sample_rate * PAUSE_FRAME_S))
    n = audio.shape[1] // hop
    power = audio[:, : n * hop].reshape(audio.shape[0], n, hop).square().mean(-1)  # (B, n)
    quiet = power <= power.amax(1, keepdim=True) * 10.0 ** (-ENERGY_RANGE_DB / 10.0)  # all-zero padding is quiet
    run = max(1, int(round(PAUSE_S / PAUSE_FRAME_S)))
    if n < run:
        return ~quiet.all(1)
    return ~quiet.unfold(1, run, 1).all(-1).any(-1)


class ViewMaker:
    """Builds ``Views`` from a batch of examples with the learner's front end and generator."""

    def __init__(self, o: ObjectiveConfig, logmel: LogMel, normaliser: Normaliser, window_samples: int):
        self.o = o
        self.logmel = logmel
        self.normaliser = normaliser
        self.window_samples = window_samples

    def view(self, audio: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """(B, L) clean audio -> normalised log-mel of one random view per row."""
        if self.o.augment == "channel":
            mel = self.logmel(channel_augment(audio, self.logmel.sample_rate, g))
            return self.normaliser(log_mixup_exp(mel, g, self.o.mixup_ratio))
        return self.normaliser(self.logmel(mild_augment(audio, g)))

    def __call__(self, examples: torch.Tensor, g: torch.Generator, with_key: bool) -> Views:
        """Examples (B, key + window samples) -> the step's views. Shorter examples (evaluation clips)
        have no key segment and fall back to two crops of the window."""
        w = min(self.window_samples, examples.shape[1])
        window, before = examples[:, -w:], examples[:, :-w]
        q = crop_waveform(window, self.o.moco_crop_fraction, g)
        query = self.view(q, g)
        clean = None
        if "clean" in (self.o.apc_target, self.o.cpc_target):
            clean = self.normaliser(self.logmel(q))
            clean = clean - clean.mean(dim=(1, 2), keepdim=True)
        target = clean if self.o.apc_target == "clean" else query
        key = valid = None
        if with_key:
            if self.o.moco_positive == "adjacent" and before.shape[1] >= q.shape[1]:
                k = before[:, -q.shape[1]:]
                valid = one_utterance(examples[:, -(w + k.shape[1]):], self.logmel.sample_rate)
            else:
                k = crop_waveform(window, self.o.moco_crop_fraction, g)
            key = self.view(k, g)
            if self.o.augment == "mild":
                key = mask_features(key, g)
        return Views(query, target, clean, key, valid)
