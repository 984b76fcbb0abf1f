"""The online learner: embed each arriving window with the current weights, then learn from it.

``OnlineLearner`` is the library half of the learner daemon (sockets, batching and
shedding live in ``streamssl.learner_daemon``). Per call:

- ``embed(windows)``: no grad, current weights, streaming state per stream (the STFT's
  unconsumed samples, the conv caches, the GRU hidden state), so the embeddings of a
  stream cut into windows are those of the whole stream. The published vector is the
  mean of c_t over the frames this window completed: every frame of the window counts
  equally, and the GRU state already carries what came before.
- ``update(windows)``: one optimizer step on a batch = one fixed-length training example
  per new window (the last ``learner.window_s`` seconds of its stream ending at the
  window, zero-padded at stream start) + ``replay_per_step`` examples from the replay
  buffer. One online forward on a mildly augmented view (crop, gain, noise) serves all
  three objectives — APC and CPC read its frames, MoCo pools it into the query — and
  only the key view (also masked in time and frequency) runs a second, no-grad pass, so
  a step costs about one plain training step. Loss = weighted sum of APC, CPC and MoCo;
  a non-finite loss or gradient skips the step and leaves every weight, statistic and
  buffer as it was.

Randomness (augmentations and CPC negatives: a torch generator; replay sampling: a numpy
generator) comes from generators owned by the learner and saved in its state, so a
resumed learner continues bit-for-bit; the global torch/numpy/python RNGs are neither
used nor touched (initial weights are drawn under ``fork_rng`` from the seed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from streamssl.augment import augment_waveform, mask_features
from streamssl.config import Config
from streamssl.device import autocast, resolve_device
from streamssl.features import LogMel, Normaliser, StreamingLogMel
from streamssl.models import Backbone, BackboneState, ProjectionHead, build_backbone
from streamssl.objectives import APC, CPC, MoCo, stream_hash
from streamssl.replay import ReplayBuffer
from streamssl.wire import AudioWindow, EmbeddingFrame

OBJECTIVES = ("apc", "cpc", "moco")


@dataclass
class StepStats:
    """What one ``update`` did; the daemon turns it into metrics."""

    step: int  # optimizer step after this update
    losses: dict[str, float]  # enabled objectives and "total"
    batch_size: int  # windows in the batch (new + replay)
    new_windows: int
    grad_norm: float
    lr: float
    skipped: bool  # the loss (or gradient) was non-finite and the step was skipped
    duration_s: float
    audio_seconds: float  # seconds of new audio this step learned from


class _Resampled:
    """A stream's audio at the feature rate, resampled chunk by chunk when its rate differs."""

    def __init__(self, in_rate: int, out_rate: int):
        self.in_rate = in_rate
        self._rs = None
        if in_rate != out_rate:
            from streamssl.sources.base import StreamResampler

            self._rs = StreamResampler(in_rate, out_rate, 1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x if self._rs is None else self._rs.process(x[:, None])[:, 0]


@dataclass
class _EmbedStream:
    """Streaming inference state of one stream."""

    stft: StreamingLogMel
    backbone: BackboneState
    last: torch.Tensor  # (dim,) last context vector, published for a window too short to finish a frame
    resample: _Resampled | None = None


@dataclass
class _TrainStream:
    """The last ``window_s`` seconds of one stream, for building training examples."""

    history: np.ndarray  # (<= window_samples,) float32
    resample: _Resampled | None = None


class OnlineLearner:
    """APC + CPC + MoCo on a live stream, one optimizer step per arrival (see module docstring)."""

    def __init__(self, cfg: Config, device: str = "cpu"):
        self.cfg = cfg
        self.device = resolve_device(device)
        f, m, o, lc = cfg.features, cfg.model, cfg.objectives, cfg.learner
        self.sample_rate = f.sample_rate
        self.window_samples = int(round(lc.window_s * f.sample_rate))
        self.weights = {"apc": o.apc_weight, "cpc": o.cpc_weight, "moco": o.moco_weight}
        with torch.random.fork_rng(devices=[]):  # weight init from the seed, global RNG untouched
            torch.manual_seed(lc.seed)
            self.logmel = LogMel(f)
            self.normaliser = Normaliser(f.n_mels, f.norm_momentum)
            self.backbone: Backbone = build_backbone(cfg)
            self.apc = APC(m.context_dim, f.n_mels, o.apc_shift) if o.apc_weight > 0 else None
            self.cpc = (
                CPC(m.context_dim, m.encoder_channels, o.cpc_steps, o.cpc_negatives) if o.cpc_weight > 0 else None
            )
            self.projection = ProjectionHead(m.context_dim, m.projection_dim) if o.moco_weight > 0 else None
            self.moco = (
                MoCo(self.backbone, self.projection, m.projection_dim, o.moco_queue, o.moco_momentum,
                     o.moco_temperature, o.moco_exclude_recent_s)
                if self.projection is not None else None
            )
        for mod in self._modules().values():
            mod.to(self.device)
        params = self.parameters()
        if lc.optimizer == "adamw":
            self.optimizer: torch.optim.Optimizer = torch.optim.AdamW(params, lr=lc.lr, weight_decay=lc.weight_decay)
        else:
            self.optimizer = torch.optim.RMSprop(params, lr=lc.lr, weight_decay=lc.weight_decay)
        self._gen = torch.Generator().manual_seed(lc.seed)  # augmentations, CPC negatives
        self._rng = np.random.default_rng(lc.seed)  # replay sampling
        self.replay = ReplayBuffer(lc.replay_size, self.window_samples, lc.replay_policy, self._rng)
        self._embed_streams: dict[str, _EmbedStream] = {}
        self._train_streams: dict[str, _TrainStream] = {}
        self._step = 0
        self.skipped_steps = 0

    # --- read-only views ----------------------------------------------------------

    @property
    def step(self) -> int:
        return self._step

    @property
    def dim(self) -> int:
        return self.backbone.dim

    @property
    def queue_fill(self) -> float:
        return self.moco.fill if self.moco is not None else 0.0

    def _modules(self) -> dict[str, nn.Module]:
        mods = {"logmel": self.logmel, "normaliser": self.normaliser, "backbone": self.backbone}
        for name in ("apc", "cpc", "projection", "moco"):
            if getattr(self, name) is not None:
                mods[name] = getattr(self, name)
        return mods

    def parameters(self) -> list[nn.Parameter]:
        """Trainable parameters (the momentum key encoder is not one)."""
        mods = [self.backbone, self.apc, self.cpc, self.projection]
        return [p for mod in mods if mod is not None for p in mod.parameters() if p.requires_grad]

    # --- audio in -----------------------------------------------------------------

    def _mono(self, w: AudioWindow, resample: _Resampled | None) -> np.ndarray:
        x = w.mono_float()
        return resample(x) if resample is not None else x

    def _resampler(self, w: AudioWindow, current: _Resampled | None) -> _Resampled | None:
        if w.sample_rate == self.sample_rate:
            return None
        if current is not None and current.in_rate == w.sample_rate:
            return current
        return _Resampled(w.sample_rate, self.sample_rate)

    # --- inference ----------------------------------------------------------------

    @torch.no_grad()
    def embed(self, windows: Sequence[AudioWindow]) -> list[EmbeddingFrame]:
        """One EmbeddingFrame per window, in order, from the current weights and each stream's state.

        Windows of different streams run through the backbone together: in rounds of at
        most one window per stream (a stream's next window needs the state its previous
        one leaves), grouped by frame count and ``Backbone.batch_key``. Each stream gets
        exactly what running it alone would give; a daemon with many streams makes a few
        batched calls instead of one call per window.
        """
        pending = []  # (index, window, stream state, normalised log-mel (T, F))
        for i, w in enumerate(windows):
            st = self._embed_streams.get(w.stream_id)
            if st is None:
                st = _EmbedStream(StreamingLogMel(self.logmel), BackboneState(), torch.zeros(self.dim))
                self._embed_streams[w.stream_id] = st
            st.resample = self._resampler(w, st.resample)
            # Non-finite samples would poison the stream's carried state for good: read them as silence.
            audio = np.nan_to_num(self._mono(w, st.resample), nan=0.0, posinf=0.0, neginf=0.0)
            mel = st.stft(torch.from_numpy(np.ascontiguousarray(audio)).to(self.device))  # (T, F)
            pending.append((i, w, st, self.normaliser(mel)))
        results: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # index -> (pooled (dim,), frames (T, dim))
        while pending:
            group, deferred, taken, group_key = [], [], set(), None
            for item in pending:
                _, w, st, x = item
                key = (x.shape[0], self.backbone.batch_key(st.backbone))
                if w.stream_id in taken or (group and key != group_key):
                    deferred.append(item)
                else:
                    group.append(item)
                    group_key = key
                taken.add(w.stream_id)  # later windows of this stream wait for the next round
            self._embed_group(group, results)
            pending = deferred
        out = []
        for i, w in enumerate(windows):
            pooled, c = results[i]
            out.append(EmbeddingFrame(
                w.stream_id, w.seq, w.capture_ns, self._step, pooled.cpu().numpy().astype(np.float32),
                session=w.session,
                frame_embeddings=c.cpu().numpy().astype(np.float32) if self.cfg.learner.per_frame_embeddings else None,
            ))
        return out

    def _embed_group(self, group: list, results: dict) -> None:
        """Run one round's windows (distinct streams, equal shapes) through the backbone at once."""
        x = torch.stack([item[3] for item in group])  # (G, T, F)
        if x.shape[1] == 0:  # too short to finish a frame: publish the last context, state unchanged
            for i, _, st, _ in group:
                results[i] = (st.last, x.new_zeros(0, self.dim))
            return
        state = self.backbone.stack_states([item[2].backbone for item in group], like=x)
        with autocast(self.device):
            _, c, state = self.backbone(x, state)
        c = c.float()  # (G, T, dim)
        for (i, _, st, _), row, row_state in zip(group, c, self.backbone.split_state(state)):
            st.backbone = row_state
            st.last = row[-1]
            results[i] = (row.mean(0), row)

    @torch.no_grad()
    def embed_segments(self, audio: np.ndarray) -> np.ndarray:
        """(n, samples) float32 at features.sample_rate -> (n, dim) pooled embeddings, each from a fresh state."""
        x = torch.as_tensor(np.asarray(audio, dtype=np.float32)).to(self.device)
        mel = self.logmel(x)  # (n, T, F)
        if mel.shape[1] == 0:
            return np.zeros((x.shape[0], self.dim), dtype=np.float32)
        with autocast(self.device):
            _, c, _ = self.backbone(self.normaliser(mel))
        return c.float().mean(1).cpu().numpy()

    def reset_stream(self, stream_id: str) -> None:
        """Forget a stream's streaming and history state (its capture restarted)."""
        self._embed_streams.pop(stream_id, None)
        self._train_streams.pop(stream_id, None)

    # --- learning -----------------------------------------------------------------

    def _example(self, w: AudioWindow) -> np.ndarray:
        """The training example ending at this window: last ``window_s`` of its stream, zero-padded at the start."""
        st = self._train_streams.get(w.stream_id)
        if st is None:
            st = _TrainStream(np.zeros(0, dtype=np.float32))
            self._train_streams[w.stream_id] = st
        st.resample = self._resampler(w, st.resample)
        x = self._mono(w, st.resample)
        n = self.window_samples
        example = np.concatenate([st.history, x])[-n:]
        clean = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)  # keep NaN out of the next examples
        st.history = np.concatenate([st.history, clean])[-n:].astype(np.float32, copy=False)
        if example.shape[0] < n:
            example = np.concatenate([np.zeros(n - example.shape[0], dtype=np.float32), example])
        return example.astype(np.float32, copy=False)

    def _features(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, S) -> normalised log-mel (B, T, F)."""
        return self.normaliser(self.logmel(audio))

    def _losses(
        self, audio: torch.Tensor, stream: torch.Tensor, time_ns: torch.Tensor, in_batch_moco: bool = False
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Each enabled objective's loss on a batch of examples (B, S); also MoCo's keys for the queue."""
        losses: dict[str, torch.Tensor] = {}
        keys = None
        g = self._gen
        crop = self.cfg.objectives.moco_crop_fraction
        with torch.no_grad():
            # One online forward serves all three objectives: a mildly augmented view (crop,
            # gain, noise) whose frames APC and CPC read and whose pooled context is MoCo's query.
            # The key view adds time/frequency masks and runs through the no-grad key encoder.
            x = self._features(augment_waveform(audio, crop, g))  # (B, T, F)
            x_key = (
                mask_features(self._features(augment_waveform(audio, crop, g)), g) if self.moco is not None else None
            )
        with autocast(self.device):
            z, c, _ = self.backbone(x)  # (B, T, C), (B, T, D)
            if self.apc is not None:
                losses["apc"] = self.apc(c.float(), x)
            if self.cpc is not None:
                losses["cpc"] = self.cpc(c.float(), z.float(), g)
            if self.moco is not None:
                q = F.normalize(self.projection(c.mean(1)).float(), dim=1)  # (B, P)
                keys = self.moco.keys(x_key)  # (B, P), no grad
                if in_batch_moco:
                    # Evaluation: the other windows of the batch are the negatives (no queue needed).
                    logits = q @ keys.T / self.moco.temperature  # (B, B)
                    losses["moco"] = F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))
                else:
                    losses["moco"] = self.moco.loss(q, keys, stream, time_ns)
        return losses, keys

    def update(self, windows: Sequence[AudioWindow]) -> StepStats:
        """One optimizer step on the new windows plus replay; returns what happened."""
        if not windows:
            raise ValueError("update() needs at least one new window (the daemon calls it per arrival)")
        started = time.perf_counter()
        lc = self.cfg.learner
        new = np.stack([self._example(w) for w in windows])
        new_stream = np.array([stream_hash(w.stream_id) for w in windows], dtype=np.int64)
        new_time = np.array([w.capture_ns for w in windows], dtype=np.int64)
        old, old_stream, old_time = self.replay.sample(lc.replay_per_step)
        batch = np.concatenate([new, old]).astype(np.float32)
        stream = torch.from_numpy(np.concatenate([new_stream, old_stream])).to(self.device)
        time_ns = torch.from_numpy(np.concatenate([new_time, old_time])).to(self.device)
        audio_s = float(sum(w.duration_s for w in windows))
        lr = float(self.optimizer.param_groups[0]["lr"])
        audio = torch.from_numpy(batch).to(self.device)

        # Statistics include the new frames before they are normalised (right from the first
        # window); they are rolled back with everything else if the step is skipped.
        saved_norm = {k: v.clone() for k, v in self.normaliser.state_dict().items()}
        with torch.no_grad():
            self.normaliser.update(self.logmel(audio[: len(windows)]))
        losses, keys = self._losses(audio, stream, time_ns)
        total = sum(self.weights[k] * v for k, v in losses.items())
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["total"] = float(total.detach()) if torch.is_tensor(total) else float(total)
        self.optimizer.zero_grad(set_to_none=True)
        skipped = not np.isfinite(values["total"])
        grad_norm = float("nan")
        if not skipped and torch.is_tensor(total) and total.requires_grad:
            total.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.parameters(), lc.grad_clip))
            skipped = not np.isfinite(grad_norm)
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
            self.normaliser.load_state_dict(saved_norm)
            self.skipped_steps += 1
        else:
            self.optimizer.step()
            self._step += 1
            if self.moco is not None:
                self.moco.momentum_update(self.backbone, self.projection)
                n = len(windows)  # only new windows enter the queue: replayed ones are already there
                self.moco.dequeue_and_enqueue(keys[:n], stream[:n], time_ns[:n])
            finite = np.isfinite(new).all(axis=1)
            self.replay.add(new[finite], new_stream[finite], new_time[finite])
        return StepStats(
            step=self._step, losses=values, batch_size=int(batch.shape[0]), new_windows=len(windows),
            grad_norm=grad_norm, lr=lr, skipped=skipped, duration_s=time.perf_counter() - started,
            audio_seconds=audio_s,
        )

    def process(self, windows: Sequence[AudioWindow]) -> tuple[list[EmbeddingFrame], StepStats]:
        """Embed first (subscribers never wait for the backward pass), then learn."""
        frames = self.embed(windows)
        return frames, self.update(windows)

    @torch.no_grad()
    def evaluate(self, audio: np.ndarray, seed: int = 0) -> dict[str, float]:
        """Each enabled loss on fixed clips (n, window_samples), changing no state.

        MoCo uses the other clips' keys as negatives, so the value is comparable between
        a fresh and a trained learner (the training queue starts empty). Augmentations and
        negatives come from a generator seeded with ``seed``: the same draws every call.
        """
        own = self._gen
        self._gen = torch.Generator().manual_seed(seed)
        try:
            x = torch.as_tensor(np.asarray(audio, dtype=np.float32)).to(self.device)
            zeros = torch.zeros(x.shape[0], dtype=torch.long, device=self.device)
            losses, _ = self._losses(x, zeros, zeros, in_batch_moco=True)
        finally:
            self._gen = own
        return {k: float(v) for k, v in losses.items()}

    # --- state --------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue bit-for-bit; only tensors and plain containers (weights_only loads it)."""
        streams = {}
        for sid, st in self._embed_streams.items():
            streams[sid] = {
                "carry": st.stft.carry.cpu(),
                "conv": [c.cpu() for c in st.backbone.conv] if st.backbone.conv is not None else None,
                "context": st.backbone.context.cpu() if st.backbone.context is not None else None,
                "last": st.last.cpu(),
            }
        return {
            "step": self._step,
            "skipped_steps": self.skipped_steps,
            "config": self.cfg.to_dict(),
            "modules": {name: mod.state_dict() for name, mod in self._modules().items()},
            "optimizer": self.optimizer.state_dict(),
            "replay": self.replay.state_dict(),
            "history": {sid: torch.from_numpy(st.history.copy()) for sid, st in self._train_streams.items()},
            "embed_streams": streams,
            "rng": {
                "torch": self._gen.get_state(),
                "numpy": _np_state_to_plain(self._rng.bit_generator.state),
            },
        }

    def load_state_dict(self, sd: dict) -> None:
        """Restore ``state_dict()``; a stream with another sample rate restarts its resampler."""
        for name, mod in self._modules().items():
            if name not in sd["modules"]:
                raise ValueError(f"state has no {name!r} module (objectives differ from the config?)")
            mod.load_state_dict(sd["modules"][name])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.replay.load_state_dict(sd["replay"])
        self._train_streams = {
            sid: _TrainStream(h.numpy().astype(np.float32)) for sid, h in sd.get("history", {}).items()
        }
        self._embed_streams = {}
        for sid, s in sd.get("embed_streams", {}).items():
            conv = [c.to(self.device) for c in s["conv"]] if s["conv"] is not None else None
            ctx = s["context"].to(self.device) if s["context"] is not None else None
            self._embed_streams[sid] = _EmbedStream(
                StreamingLogMel(self.logmel, s["carry"].to(self.device)), BackboneState(conv, ctx),
                s["last"].to(self.device),
            )
        self._gen.set_state(sd["rng"]["torch"])
        self._rng.bit_generator.state = _np_state_from_plain(sd["rng"]["numpy"])
        self._step = int(sd["step"])
        self.skipped_steps = int(sd.get("skipped_steps", 0))


def _np_state_to_plain(state: dict) -> dict:
    """PCG64 state holds 128-bit ints; store them as decimal strings so weights_only can load them."""
    return {
        "bit_generator": state["bit_generator"],
        "state": {k: str(v) for k, v in state["state"].items()},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def _np_state_from_plain(plain: dict) -> dict:
    return {
        "bit_generator": plain["bit_generator"],
        "state": {k: int(v) for k, v in plain["state"].items()},
        "has_uint32": plain["has_uint32"],
        "uinteger": plain["uinteger"],
    }

