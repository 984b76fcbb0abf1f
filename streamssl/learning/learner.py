"""The online learner: embed each arriving window with the current weights, then learn from it.

``OnlineLearner`` joins the per-stream half (``streamssl.learning.stream``: each window
converted once, streaming state, training history) to the tensor half
(``streamssl.learning.core``: networks, objectives, optimizer) and owns the replay
buffer. Sockets, batching and shedding live in the learner daemon. Per call:

- ``embed(windows)``: no grad, current weights, streaming state per stream (the STFT's
  unconsumed samples, the conv caches, the GRU hidden state), so the embeddings of a
  stream cut into windows are those of the whole stream. The published vector is the
  readout (``streamssl.learning.readout``: energy-gated mean and std of z_t and c_t) over
  the frames this window completed; the GRU state already carries what came before.
- ``update(windows)``: one optimizer step on a batch = one fixed-length training example
  per new window (the last ``learner.window_s`` seconds of its stream ending at the
  window, zero-padded at stream start) + ``replay_per_step`` examples from the replay
  buffer (``LearnerCore.step`` does the tensor work).
- ``replay_update()``: one step on replayed examples alone, for a training thread that
  would otherwise wait for the next window (``learner.idle_replay``). Early on, learning
  is limited by steps, not by new audio: 800 windows with one replay-only step after each
  probe about as 1600 windows do (``bench/RESULTS.md``, "Steps, not audio").

A window that goes to both (the daemon's path, ``process``) is prepared once with
``prepare`` and passed as a ``PreparedWindow``; a plain ``AudioWindow`` is prepared on
the spot, which is right when it goes to only one of them.

Serving beside training: after ``serve_from_copy()`` every embedding is made with
``streamssl.learning.embedder.ServingWeights`` (a copy of the weights that
``publish_weights()`` refreshes after each step), so a training thread can run
``update`` while another thread embeds; the learner daemon does this. Per-stream
streaming state (``prepare``, ``embed``) then belongs to the serving thread and the
training history (``update``) to the training thread.

Randomness: the core's torch generator (augmentations, CPC negatives) and a numpy
generator here (replay sampling), both saved in the state, so a resumed learner
continues bit-for-bit.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from streamssl.config import Config
from streamssl.learning.checkpoint import copied
from streamssl.learning.core import LearnerCore
from streamssl.learning.device import to_device
from streamssl.learning.embedder import Embedder, ServingWeights
from streamssl.learning.objectives import stream_hash
from streamssl.learning.replay import ReplayBuffer
from streamssl.learning.stream import PreparedWindow, StreamState
from streamssl.wire import AudioWindow, EmbeddingFrame


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
    untrained: list[str] = field(default_factory=list)  # stream of each window embedded but left out of the step


class OnlineLearner:
    """APC + CPC + MoCo on live streams, one optimizer step per arrival (see module docstring)."""

    def __init__(self, cfg: Config, device: str = "cpu"):
        self.cfg = cfg
        self.core = LearnerCore(cfg, device)
        self.device = self.core.device
        self.sample_rate = cfg.features.sample_rate
        self.window_samples = int(round(cfg.learner.window_s * self.sample_rate))
        self.example_samples = self.core.example_samples  # one training example: key segment + window
        self.audio_seconds = 0.0  # new audio learned from, all steps (the offline reference regenerates it)
        lc = cfg.learner
        self._rng = np.random.default_rng(lc.seed)  # replay sampling
        key_dim = cfg.model.projection_dim if cfg.objectives.moco_weight > 0 else 0
        self.replay = ReplayBuffer(lc.replay_size, self.example_samples, lc.replay_policy, self._rng, key_dim)
        self._streams: dict[str, StreamState] = {}
        self.serving: ServingWeights | None = None  # see serve_from_copy

    # --- read-only views ----------------------------------------------------------

    @property
    def step(self) -> int:
        return self.core.step_count

    @property
    def skipped_steps(self) -> int:
        return self.core.skipped_steps

    @property
    def dim(self) -> int:
        return self.core.dim

    @property
    def queue_fill(self) -> float:
        return self.core.moco.fill if self.core.moco is not None else 0.0

    @property
    def streams(self) -> dict[str, StreamState]:
        return self._streams

    def parameters(self) -> list[nn.Parameter]:
        return self.core.parameters()

    # --- windows in ---------------------------------------------------------------

    def _stream(self, stream_id: str) -> StreamState:
        st = self._streams.get(stream_id)
        if st is None:
            st = StreamState(stream_id, self.core.logmel, self.example_samples, self.dim)
            self._streams[stream_id] = st
        return st

    def prepare(self, windows: Sequence[AudioWindow]) -> list[PreparedWindow]:
        """Each window as mono float at the feature rate, converted once, in order."""
        return [self._stream(w.stream_id).prepare(w) for w in windows]

    def _prepared(self, windows: Sequence[AudioWindow | PreparedWindow]) -> list[PreparedWindow]:
        return [w if isinstance(w, PreparedWindow) else self._stream(w.stream_id).prepare(w) for w in windows]

    def reset_stream(self, stream_id: str) -> None:
        """Forget a stream's streaming and history state (its capture restarted, or it was evicted)."""
        self._streams.pop(stream_id, None)

    def retain_streams(self, stream_ids) -> None:
        """Forget every stream not in ``stream_ids``: windows of an evicted stream that were still
        queued re-create its state when processed, and the holder of the stream list decides."""
        for sid in [s for s in self._streams if s not in stream_ids]:
            del self._streams[sid]

    # --- a learner group ----------------------------------------------------------

    def join_group(self, group) -> None:
        """Learn as one rank of ``group`` (``streamssl.learning.distributed``): every rank checks
        that it is at the same step, takes rank 0's weights, statistics and queue, and draws its
        augmentations from its own generator. Collective: every rank calls it, before any step."""
        from streamssl.learning.distributed import rank_seed

        group.check_same_step(self.step)
        group.broadcast_modules(self.core.modules())
        self.core.group = group
        if group.rank:
            self.core.generator.manual_seed(rank_seed(self.cfg.learner.seed, group.rank) + self.step)
            self._rng = np.random.default_rng(rank_seed(self.cfg.learner.seed, group.rank) + self.step)
            self.replay._rng = self._rng  # noqa: SLF001 - the buffer samples with the learner's generator
        self.publish_weights()

    # --- inference ----------------------------------------------------------------

    def serve_from_copy(self) -> None:
        """Embed from now on with a copy of the weights that ``publish_weights`` refreshes (module docstring)."""
        self.serving = ServingWeights(self.core.embedder)

    def publish_weights(self) -> None:
        """Hand the weights of the step just taken to serving (called by the training thread)."""
        if self.serving is not None:
            self.serving.publish(self.core.embedder)

    @contextmanager
    def _embedder(self) -> Iterator[Embedder]:
        if self.serving is None:
            yield self.core.embedder
        else:
            with self.serving.use() as embedder:
                yield embedder

    @torch.no_grad()
    def embed(self, windows: Sequence[AudioWindow | PreparedWindow]) -> list[EmbeddingFrame]:
        """One EmbeddingFrame per window, in order, from the current weights and each stream's state.

        Windows of different streams run through the backbone together: in rounds of at
        most one window per stream (a stream's next window needs the state its previous
        one leaves), grouped by frame count and ``Backbone.batch_key``. Each stream gets
        exactly what running it alone would give; a daemon with many streams makes a few
        batched calls instead of one call per window.
        """
        prepared = self._prepared(windows)
        pending = [(i, p, p.stream.mel(p, self.device)) for i, p in enumerate(prepared)]  # (index, window, raw log-mel (T, F))
        results: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # index -> (embedding (dim,), c (T, frame_dim))
        with self._embedder() as embedder:  # one step's weights for the whole call
            while pending:
                group, deferred, taken, group_key = [], [], set(), None
                for item in pending:
                    _, p, x = item
                    key = (x.shape[0], embedder.backbone.batch_key(p.stream.backbone))
                    if p.stream in taken or (group and key != group_key):
                        deferred.append(item)
                    else:
                        group.append(item)
                        group_key = key
                    taken.add(p.stream)  # later windows of this stream wait for the next round
                self._embed_group(embedder, group, results)
                pending = deferred
            step = embedder.step
        out = []
        per_frame = self.cfg.learner.per_frame_embeddings
        for i, p in enumerate(prepared):
            pooled, c = results[i]
            w = p.window
            out.append(EmbeddingFrame(
                w.stream_id, w.seq, w.capture_ns, step, pooled.cpu().numpy().astype(np.float32),
                session=w.session, frame_embeddings=c.cpu().numpy().astype(np.float32) if per_frame else None,
            ))
        return out

    def _embed_group(self, embedder: Embedder, group: list, results: dict) -> None:
        """Run one round's windows (distinct streams, equal shapes) through the backbone at once."""
        mel = torch.stack([m for _, _, m in group])  # (G, T, F)
        if mel.shape[1] == 0:  # too short to finish a frame: publish the last embedding, state unchanged
            for i, p, _ in group:
                results[i] = (p.stream.last, mel.new_zeros(0, self.core.frame_dim))
            return
        pooled, c, states = embedder.embed_frames(mel, [p.stream.backbone for _, p, _ in group])
        for (i, p, _), vec, frames, state in zip(group, pooled, c, states):
            p.stream.backbone = state
            p.stream.last = vec.clone()  # not a view: it would keep the whole group's output alive
            results[i] = (vec, frames)

    @torch.no_grad()
    def embed_segments(self, audio: np.ndarray) -> np.ndarray:
        """(n, samples) float32 at features.sample_rate -> (n, dim) pooled embeddings, each from a fresh state."""
        x = torch.as_tensor(np.asarray(audio, dtype=np.float32)).to(self.device)
        with self._embedder() as embedder:
            return embedder.embed_clips(x).cpu().numpy()

    # --- learning -----------------------------------------------------------------

    def update(self, windows: Sequence[AudioWindow | PreparedWindow], learn_at_most: int | None = None) -> StepStats:
        """One optimizer step on the new windows plus replay; returns what happened.

        With ``learn_at_most`` (the daemon's ``learner.batch_max``) a larger backlog is
        learned from an evenly spaced sample of that many windows, so serving every window
        never waits for training on all of them; every window still enters its stream's
        history, so later examples stay continuous. ``StepStats.untrained`` lists the rest.
        """
        if not windows and self.core.group is None:
            raise ValueError("update() needs at least one new window (the daemon calls it per arrival)")
        started = time.perf_counter()
        every = self._prepared(windows)
        examples = [p.stream.example(p, self.example_samples) for p in every]  # in stream order, all of them
        chosen = range(len(every))
        if learn_at_most is not None and len(every) > learn_at_most:
            chosen = sorted(set(np.linspace(0, len(every) - 1, learn_at_most).round().astype(int).tolist()))
        untrained = [every[i].window.stream_id for i in sorted(set(range(len(every))) - set(chosen))]
        prepared = [every[i] for i in chosen]
        lc = self.cfg.learner
        new = np.stack([examples[i] for i in chosen]) if prepared else np.zeros((0, self.example_samples), np.float32)
        new_stream = np.array([stream_hash(p.window.stream_id) for p in prepared], dtype=np.int64)
        new_time = np.array([p.window.capture_ns for p in prepared], dtype=np.int64)
        old, old_stream, old_time = self.replay.sample(lc.replay_per_step)
        batch = np.concatenate([new, old]).astype(np.float32)
        lr = float(self.core.optimizer.param_groups[0]["lr"])
        result = self.core.step(
            to_device(batch, self.device),
            to_device(np.concatenate([new_stream, old_stream]), self.device),
            to_device(np.concatenate([new_time, old_time]), self.device),
            new=len(prepared),
        )
        audio_s = float(sum(p.window.duration_s for p in prepared))
        if not result.skipped:
            self.audio_seconds += audio_s
            finite = np.isfinite(new).all(axis=1)
            ranked = result.keys is not None and lc.replay_policy == "diverse"  # only that policy reads keys (a host copy)
            keys = result.keys.cpu().numpy()[finite] if ranked else None
            self.replay.add(new[finite], new_stream[finite], new_time[finite], keys)
        return StepStats(
            step=self.step, losses=result.losses, batch_size=int(batch.shape[0]), new_windows=len(prepared),
            grad_norm=result.grad_norm, lr=lr, skipped=result.skipped, duration_s=time.perf_counter() - started,
            audio_seconds=audio_s, untrained=untrained,
        )

    def replay_update(self) -> StepStats | None:
        """One optimizer step on ``1 + replay_per_step`` replayed examples and nothing new, or None
        while the buffer holds fewer (a batch the size of a live step's, so the two kinds of step
        weigh alike). Nothing enters the buffer, the MoCo queue or the normaliser: all of it
        saw this audio when it was new. Not in a learner group, whose ranks step in lockstep."""
        if self.core.group is not None:
            raise RuntimeError("replay_update() is not for a learner group: its ranks step together on new windows")
        size = 1 + self.cfg.learner.replay_per_step
        if len(self.replay) < size:
            return None
        started = time.perf_counter()
        audio, stream, time_ns = self.replay.sample(size)
        lr = float(self.core.optimizer.param_groups[0]["lr"])
        result = self.core.step(to_device(audio, self.device), to_device(stream, self.device),
                                to_device(time_ns, self.device), new=0)
        return StepStats(
            step=self.step, losses=result.losses, batch_size=size, new_windows=0, grad_norm=result.grad_norm,
            lr=lr, skipped=result.skipped, duration_s=time.perf_counter() - started, audio_seconds=0.0,
        )

    def process(self, windows: Sequence[AudioWindow]) -> tuple[list[EmbeddingFrame], StepStats]:
        """Embed first (subscribers never wait for the backward pass), then learn, on this thread;
        each window converted once. A serving copy, if any, gets the new weights at once."""
        prepared = self.prepare(windows)
        frames = self.embed(prepared)
        stats = self.update(prepared)
        self.publish_weights()
        return frames, stats

    def evaluate(self, audio: np.ndarray, seed: int = 0) -> dict[str, float]:
        """Each enabled loss on fixed clips (n, window_samples), changing no state.

        MoCo uses the other clips' keys as negatives, so the value is comparable between
        a fresh and a trained learner (the training queue starts empty). Augmentations and
        negatives come from a generator seeded with ``seed``: the same draws every call.
        """
        return self.core.evaluate(torch.as_tensor(np.asarray(audio, dtype=np.float32)).to(self.device), seed)

    # --- state --------------------------------------------------------------------

    def training_state(self) -> dict:
        """The half of ``state_dict`` the training thread changes (weights, optimizer, replay, each
        stream's history), as copies: take it between two steps, then write it at leisure."""
        return {
            "core": copied(self.core.state_dict()),
            "replay": self.replay.state_dict(),
            "replay_rng": _np_state_to_plain(self._rng.bit_generator.state),
            "audio_seconds": self.audio_seconds,
            "histories": {sid: st.history_state() for sid, st in list(self._streams.items())},
        }

    def serving_state(self) -> dict:
        """The half the serving thread changes (each stream's STFT carry and backbone state), as copies."""
        return {
            "config": self.cfg.to_dict(),
            "streams": {sid: st.serving_state() for sid, st in list(self._streams.items())},
        }

    @staticmethod
    def join_state(training: dict, serving: dict) -> dict:
        """One ``state_dict`` from the two halves. Streams are the serving half's; a stream the
        training half has no history for (it arrived in between) starts with an empty one."""
        histories = training["histories"]
        empty = torch.zeros(0, dtype=torch.float32)
        return {
            "config": serving["config"],
            **{k: v for k, v in training.items() if k != "histories"},
            "streams": {sid: {**s, "history": histories.get(sid, empty)} for sid, s in serving["streams"].items()},
        }

    def state_dict(self) -> dict:
        """Everything needed to continue bit-for-bit; only tensors and plain containers (weights_only loads it)."""
        return self.join_state(self.training_state(), self.serving_state())

    def load_state_dict(self, sd: dict, model_only: bool = False) -> None:
        """Restore ``state_dict()``; a stream with another sample rate restarts its resampler.

        ``model_only``: the weights, optimizer and statistics, not the replay buffer and the
        streams (a learner group's rank > 0 resuming from rank 0's checkpoint: its own
        streams start afresh, its replay fills again)."""
        self.core.load_state_dict(sd["core"])
        if model_only:
            self.audio_seconds = float(sd.get("audio_seconds", 0.0))
            self.publish_weights()
            return
        self.replay.load_state_dict(sd["replay"])
        self._streams = {}
        for sid, s in sd.get("streams", {}).items():
            self._stream(sid).load_state_dict(s, self.device)
        self._rng.bit_generator.state = _np_state_from_plain(sd["replay_rng"])
        self.audio_seconds = float(sd.get("audio_seconds", 0.0))
        self.publish_weights()


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
