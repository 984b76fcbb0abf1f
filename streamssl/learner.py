"""OnlineLearner: embed each arriving window, then take one self-supervised step.

Two paths share one model:

* ``embed`` is the streaming path: per stream it carries the STFT tail and the causal
  model's state (conv caches, GRU hidden), so a window's embedding depends on what came
  before it exactly as if the stream had been processed whole. No gradients; the
  current weights; deterministic for a given state.
* ``update`` is the learning path: each new window becomes a training example of
  ``learner.window_s`` seconds (the window plus the audio just before it in its
  stream), joined by ``replay_per_step`` examples from the replay memory. One forward
  pass of the online model on a mildly augmented view (gain, noise, random crop)
  serves all three objectives: APC and CPC read its frames, MoCo pools it into the
  query; the momentum key encoder sees a second, more strongly augmented view (plus
  time/frequency masks). A non-finite loss or gradient skips the step and leaves
  weights, optimizer, queue and normaliser untouched.

All randomness comes from one ``torch.Generator`` that is part of the state, so a
learner restored from a checkpoint continues bit for bit.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from streamssl import augment
from streamssl.config import Config
from streamssl.device import autocast
from streamssl.features import LogMel, Normaliser, StreamingLogMel
from streamssl.models import BackboneState, build_backbone
from streamssl.objectives import APC, CPC, MoCo
from streamssl.replay import Replay
from streamssl.wire import AudioWindow, EmbeddingFrame


@dataclass
class StepStats:
    step: int  # optimizer step after this update
    losses: dict[str, float]  # enabled objectives and "total"
    batch_size: int  # examples in the batch (new + replay)
    new_windows: int
    grad_norm: float
    lr: float
    skipped: bool  # True when the loss or gradient was non-finite and nothing changed
    duration_s: float
    audio_seconds: float  # seconds of new audio learned from


@dataclass
class _Stream:
    """Streaming state of one stream for ``embed``."""

    logmel: StreamingLogMel
    backbone: BackboneState
    last: np.ndarray | None = None  # last embedding, reused for a window too short for one frame


def stream_hash(stream_id: str) -> int:
    """Stable 31-bit id of a stream for the MoCo queue's same-stream exclusion."""
    return zlib.crc32(stream_id.encode()) & 0x7FFFFFFF


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return x
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


class OnlineLearner:
    """The model, its objectives, optimizer, replay and streaming state."""

    def __init__(self, cfg: Config, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        lc, oc = cfg.learner, cfg.objectives
        torch.manual_seed(lc.seed)  # initial weights are a function of the seed
        self.generator = torch.Generator().manual_seed(lc.seed)
        self.logmel = LogMel(cfg.features).to(self.device)
        self.norm = Normaliser(cfg.features.n_mels, cfg.features.norm_momentum).to(self.device)
        self.backbone = build_backbone(cfg).to(self.device)
        self.apc = APC(self.backbone.dim, cfg.features.n_mels, oc.apc_shift).to(self.device)
        self.cpc = CPC(self.backbone.dim, self.backbone.z_dim, oc.cpc_steps, oc.cpc_negatives).to(self.device)
        self.moco = MoCo(
            self.backbone, self.backbone.dim, cfg.model.projection_dim, oc.moco_queue, oc.moco_momentum,
            oc.moco_temperature, oc.moco_exclude_recent_s,
        ).to(self.device)
        self._trainable = nn.ModuleList([self.backbone, self.apc, self.cpc, self.moco.projection])
        params = [p for p in self._trainable.parameters() if p.requires_grad]
        if lc.optimizer == "adamw":
            self.optimizer: torch.optim.Optimizer = torch.optim.AdamW(params, lr=lc.lr, weight_decay=lc.weight_decay)
        else:
            self.optimizer = torch.optim.RMSprop(params, lr=lc.lr, weight_decay=lc.weight_decay)
        self.sample_rate = cfg.features.sample_rate
        self.example_samples = int(round(lc.window_s * self.sample_rate))
        self.replay = Replay(lc.replay_size, self.example_samples, lc.replay_policy, self.generator)
        self._history: dict[str, np.ndarray] = {}  # last example_samples of each stream (update path)
        self._streams: dict[str, _Stream] = {}  # embed path
        self._step = 0

    # --- read-only views ----------------------------------------------------------

    @property
    def step(self) -> int:
        return self._step

    @property
    def dim(self) -> int:
        return self.backbone.dim

    @property
    def queue_fill(self) -> float:
        return self.moco.fill

    def parameters(self):
        return self._trainable.parameters()

    # --- streaming embeddings -----------------------------------------------------

    def _mono(self, w: AudioWindow) -> np.ndarray:
        return _resample(w.mono_float(), w.sample_rate, self.sample_rate)

    @torch.no_grad()
    def embed(self, windows: Sequence[AudioWindow]) -> list[EmbeddingFrame]:
        """One EmbeddingFrame per window, in order, carrying each stream's state forward."""
        frames = []
        for w in windows:
            st = self._streams.get(w.stream_id)
            if st is None:
                st = self._streams[w.stream_id] = _Stream(StreamingLogMel(self.logmel), BackboneState())
            audio = torch.from_numpy(np.ascontiguousarray(self._mono(w))).to(self.device)
            mel = st.logmel(audio)  # (T, F)
            per_frame = None
            if mel.shape[0]:
                with autocast(self.device):
                    _, c, st.backbone = self.backbone(self.norm(mel)[None], st.backbone)
                c = c[0].float()
                st.last = c.mean(0).cpu().numpy()
                if self.cfg.learner.per_frame_embeddings:
                    per_frame = c.cpu().numpy()
            embedding = st.last if st.last is not None else np.zeros(self.dim, np.float32)
            frames.append(EmbeddingFrame(
                w.stream_id, w.seq, w.capture_ns, self._step, embedding, session=w.session,
                frame_embeddings=per_frame,
            ))
        return frames

    @torch.no_grad()
    def embed_segments(self, audio: np.ndarray, batch: int = 64) -> np.ndarray:
        """(n, samples) mono float32 at features.sample_rate -> (n, dim), each segment on its own."""
        out = []
        for i in range(0, len(audio), batch):
            x = torch.from_numpy(np.ascontiguousarray(audio[i : i + batch], dtype=np.float32)).to(self.device)
            with autocast(self.device):
                _, c, _ = self.backbone(self.norm(self.logmel(x)))
            out.append(c.float().mean(1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def reset_stream(self, stream_id: str) -> None:
        """Forget a stream's state: its capture restarted, the audio is not continuous."""
        self._streams.pop(stream_id, None)
        self._history.pop(stream_id, None)

    # --- learning -----------------------------------------------------------------

    def _examples(self, windows: Sequence[AudioWindow]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each window -> the last window_s seconds of its stream ending with it (zero-padded at start)."""
        n = self.example_samples
        audio, streams, times = [], [], []
        for w in windows:
            hist = np.concatenate([self._history.get(w.stream_id, np.zeros(0, np.float32)), self._mono(w)])[-n:]
            self._history[w.stream_id] = hist
            audio.append(np.pad(hist, (n - len(hist), 0)))
            streams.append(stream_hash(w.stream_id))
            times.append(w.capture_ns / 1e9)
        return (torch.from_numpy(np.stack(audio)), torch.tensor(streams, dtype=torch.long),
                torch.tensor(times, dtype=torch.float64))

    def update(self, windows: Sequence[AudioWindow]) -> StepStats:
        """One optimizer step on the new windows plus replay."""
        started = time.perf_counter()
        lc, oc = self.cfg.learner, self.cfg.objectives
        new_audio, new_stream, new_time = self._examples(windows)
        old_audio, old_stream, old_time = self.replay.sample(lc.replay_per_step)
        audio = torch.cat([new_audio, old_audio]).to(self.device)
        stream = torch.cat([new_stream, old_stream]).to(self.device)
        time_s = torch.cat([new_time, old_time]).to(self.device)
        g = self.generator

        with torch.no_grad():
            mel_clean = self.logmel(audio)  # (B, T, F) for the normaliser, folded in only if the step succeeds
            x_query = augment.crop(self.norm(self.logmel(augment.gain_and_noise(audio, g))), oc.moco_crop_fraction, g)
        losses: dict[str, torch.Tensor] = {}
        with autocast(self.device):
            z, c, _ = self.backbone(x_query)
            if oc.apc_weight > 0:
                losses["apc"] = self.apc(c, x_query)
            if oc.cpc_weight > 0:
                losses["cpc"] = self.cpc(c, z, g)
            keys = None
            if oc.moco_weight > 0:
                with torch.no_grad():
                    x_key = augment.masks(
                        augment.crop(self.norm(self.logmel(augment.gain_and_noise(audio, g))), oc.moco_crop_fraction, g),
                        g,
                    )
                    keys = self.moco.key(x_key)
                q = self.moco.query(c.mean(1))
                losses["moco"] = self.moco.loss(q, keys.float(), stream, time_s)
        weights = {"apc": oc.apc_weight, "cpc": oc.cpc_weight, "moco": oc.moco_weight}
        total = sum(weights[k] * v.float() for k, v in losses.items())
        self.optimizer.zero_grad(set_to_none=True)
        skipped = not bool(torch.isfinite(total))
        grad_norm = float("nan")
        if not skipped:
            total.backward()
            grad_norm = float(nn.utils.clip_grad_norm_(list(self.parameters()), lc.grad_clip))
            skipped = not np.isfinite(grad_norm)
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.optimizer.step()
            if keys is not None:
                self.moco.momentum_update(self.backbone)
                self.moco.enqueue(keys[: len(windows)].float(), stream[: len(windows)], time_s[: len(windows)])
            self.norm.update(mel_clean[: len(windows)])
            self.replay.add(new_audio, new_stream, new_time)
            self._step += 1
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["total"] = float(total.detach())
        return StepStats(
            step=self._step, losses=values, batch_size=int(audio.shape[0]), new_windows=len(windows),
            grad_norm=grad_norm, lr=float(self.optimizer.param_groups[0]["lr"]), skipped=skipped,
            duration_s=time.perf_counter() - started, audio_seconds=float(sum(w.duration_s for w in windows)),
        )

    def process(self, windows: Sequence[AudioWindow]) -> tuple[list[EmbeddingFrame], StepStats]:
        """Embed first (what subscribers get now), then learn from the same windows."""
        frames = self.embed(windows)
        return frames, self.update(windows)

    # --- state --------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue bit for bit; tensors and plain containers only."""
        return {
            "step": self._step,
            "logmel_norm": self.norm.state_dict(),
            "backbone": self.backbone.state_dict(),
            "apc": self.apc.state_dict(),
            "cpc": self.cpc.state_dict(),
            "moco": self.moco.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "replay": self.replay.state_dict(),
            "generator": self.generator.get_state(),
            "history": {sid: torch.from_numpy(h.copy()) for sid, h in self._history.items()},
            "streams": {
                sid: {
                    "carry": st.logmel.carry.cpu(),
                    "conv": [t.cpu() for t in st.backbone.conv] if st.backbone.conv is not None else [],
                    "context": st.backbone.context.cpu() if st.backbone.context is not None else None,
                    "last": torch.from_numpy(st.last) if st.last is not None else None,
                }
                for sid, st in self._streams.items()
            },
        }

    def load_state_dict(self, sd: dict) -> None:
        self._step = int(sd["step"])
        self.norm.load_state_dict(sd["logmel_norm"])
        self.backbone.load_state_dict(sd["backbone"])
        self.apc.load_state_dict(sd["apc"])
        self.cpc.load_state_dict(sd["cpc"])
        self.moco.load_state_dict(sd["moco"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.replay.load_state_dict(sd["replay"])
        self.generator.set_state(sd["generator"])
        self._history = {sid: t.numpy().copy() for sid, t in sd["history"].items()}
        self._streams = {}
        for sid, st in sd["streams"].items():
            dev = self.device
            state = BackboneState(
                [t.to(dev) for t in st["conv"]] or None,
                st["context"].to(dev) if st["context"] is not None else None,
            )
            last = st["last"].numpy().copy() if st["last"] is not None else None
            self._streams[sid] = _Stream(StreamingLogMel(self.logmel, st["carry"].to(dev)), state, last)
