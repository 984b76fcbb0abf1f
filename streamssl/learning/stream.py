"""What the learner holds for one live stream, and each window converted once for it.

A window reaches the learner in the wire's format (int16 or float32, any channel count,
the capture's sample rate). ``StreamState.prepare`` turns it into mono float32 at the
feature rate exactly once (the resampler is stateful, so a window must pass through it
once and in order); the result, a ``PreparedWindow``, then serves both halves of the
learner: ``embed`` (the streaming STFT carry and backbone state below) and ``update``
(the training history below). A stream's state is dropped when its capture restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from streamssl.learning.features import LogMel, StreamingLogMel
from streamssl.learning.models import BackboneState
from streamssl.wire import AudioWindow


@dataclass
class PreparedWindow:
    """A window as the learner uses it; ``audio`` may hold non-finite samples (``update`` skips them)."""

    window: AudioWindow
    stream: "StreamState"
    audio: np.ndarray  # (samples,) float32 at features.sample_rate

    @property
    def clean(self) -> np.ndarray:
        """The audio with non-finite samples read as silence: they would poison carried state for good."""
        return np.nan_to_num(self.audio, nan=0.0, posinf=0.0, neginf=0.0)


class StreamState:
    """One stream's resampler, streaming front end, backbone carry and training history."""

    def __init__(self, stream_id: str, logmel: LogMel, history_samples: int, dim: int):
        self.stream_id = stream_id
        self.rate = logmel.sample_rate
        self.stft = StreamingLogMel(logmel)
        self.backbone = BackboneState()
        self.last = torch.zeros(dim, device=logmel.window.device)  # last c_t: published for a window too short for a frame
        self.history = np.zeros(0, dtype=np.float32)  # the stream's last ``history_samples`` (clean) samples
        self.history_samples = history_samples
        self._resampler = None  # (in_rate, StreamResampler) while the stream arrives at another rate

    def prepare(self, w: AudioWindow) -> PreparedWindow:
        """Mono float32 at the feature rate; call once per window, in stream order."""
        x = w.mono_float()
        if w.sample_rate != self.rate:
            if self._resampler is None or self._resampler[0] != w.sample_rate:
                from streamssl.capture.resample import StreamResampler

                self._resampler = (w.sample_rate, StreamResampler(w.sample_rate, self.rate, 1))
            x = self._resampler[1].process(x[:, None])[:, 0]
        else:
            self._resampler = None
        return PreparedWindow(w, self, np.ascontiguousarray(x, dtype=np.float32))

    def mel(self, p: PreparedWindow, device: torch.device) -> torch.Tensor:
        """Log-mel frames (T, F) this window completes, advancing the STFT carry."""
        return self.stft(torch.from_numpy(p.clean).to(device))

    def example(self, p: PreparedWindow, samples: int) -> np.ndarray:
        """The training example ending at this window: the stream's last ``samples``, zero-padded at its start.

        The new part keeps non-finite samples (the step is then skipped and counted); the
        history keeps them as silence so later examples are not poisoned.
        """
        example = np.concatenate([self.history, p.audio])[-samples:]
        self.history = np.concatenate([self.history, p.clean])[-self.history_samples :]
        if example.shape[0] < samples:
            example = np.concatenate([np.zeros(samples - example.shape[0], dtype=np.float32), example])
        return example.astype(np.float32, copy=False)

    # --- state --------------------------------------------------------------------

    def serving_state(self) -> dict:
        """The streaming half (serving thread's): copies, so the caller may keep them while serving goes on.
        The resampler restarts on resume (a stream at the feature rate has none)."""
        b = self.backbone
        return {
            "carry": _copy(self.stft.carry),
            "conv": [_copy(c) for c in b.conv] if b.conv is not None else None,
            "context": _copy(b.context) if b.context is not None else None,
            "last": _copy(self.last),
        }

    def history_state(self) -> torch.Tensor:
        """The training half (training thread's): a copy of the history."""
        return torch.from_numpy(self.history.copy())

    def state_dict(self) -> dict:
        """Tensors only: ``serving_state`` plus ``"history"``."""
        return {**self.serving_state(), "history": self.history_state()}

    def load_state_dict(self, sd: dict, device: torch.device) -> None:
        self.stft.carry = sd["carry"].to(device)
        conv = [c.to(device) for c in sd["conv"]] if sd["conv"] is not None else None
        self.backbone = BackboneState(conv, sd["context"].to(device) if sd["context"] is not None else None)
        self.last = sd["last"].to(device)
        self.history = sd["history"].numpy().astype(np.float32)[-self.history_samples :]


def _copy(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True)
