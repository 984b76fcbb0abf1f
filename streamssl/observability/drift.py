"""Drift and collapse monitoring: river detectors on three signals, CKA on a probe set.

What is watched (ARCHITECTURE.md, "Drift and collapse"):

- **input** — per audio window, three statistics from ``input_statistics``: log-energy,
  spectral centroid and the log-energy above 4 kHz (the band where speech and noise
  differ most). Speech windows are bimodal (talk vs pause), so no single statistic
  separates speech from noise *and* from tones; each gets its own detectors and any
  of them reports ``input``. Input is watched **per stream** (its own warm-up and
  detectors, at most ``INPUT_STREAMS_MAX`` streams, least recently seen dropped): a
  drift is a change of one source, and one detector over 16 interleaved speech streams
  read their stationary mixture as drift 61 times in the first 9.5 minutes of a soak
  (32 in 30 minutes once its warm-up counted per stream), the same windows per stream
  none in a 3-minute replay.
- **embedding** — Euclidean distance of each new embedding to a running centroid (an
  exponentially weighted mean per dimension, ``river.stats.EWMean``), divided by that
  distance's own running mean over ~200 embeddings, as the loss is: a training model's
  embeddings spread out slowly, which read as drift every few minutes of a stationary
  soak; a sudden change of input still jumps the ratio. (Not the
  cosine distance: for varied input such as speech the centroid of unit vectors is
  short, every direction is about equally far from it, and a new regime only shows
  once the centroid has moved — measured 8-11 s late instead of at once.)
- **loss** — the total loss relative to its own running mean (about 10 steps), so the slow decline
  of a learning model is not "drift" but a sudden jump is.

Each signal is **standardised** before it reaches a detector: its first ``cfg.warmup``
observations fix a mean and a standard deviation (with a floor, so a silent warm-up
cannot make every later value look enormous), and from then on the detectors see
z-scores. That makes one set of parameters work for dB, Hz, distances and losses:
ADWIN's bound has a term that assumes values in [0, 1] and is far too conservative for
small shifts on raw [0, 1]-scaled features (measured: 20-40 s to notice speech→noise),
while on z-scores it reacts within seconds; Page-Hinkley's ``delta``/``threshold`` are
in standard deviations. The embedding signal is one for all streams, so its warm-up
lasts ``cfg.warmup`` observations per stream seen meanwhile: 16 speech streams started
together all talk through their first 60 windows, and a scale fixed on those holds no
pauses. ADWIN tests for a cut every ``cfg.adwin_clock`` observations
(river's default 32 would add up to 16 s of delay at 500 ms windows).

Representation drift is measured directly: the daemon re-embeds a fixed probe set of
windows every ``cfg.check_every`` optimizer steps and ``check_probe`` compares the result with
the previous check and with the first one by linear CKA (1 = same geometry).

Collapse: over the last ``cfg.spread_window`` embeddings, ``embedding_spread`` (mean
per-dimension std of the L2-normalised rows) falls towards 0 when every input maps to
the same point, and ``effective_rank`` (RankMe) falls towards 1 when the embeddings vary
along only one or a few directions, which the spread cannot see (see
``signals.effective_rank``). The rank costs an SVD, so it is recomputed every
``cfg.rank_every`` embedding batches.

>>> import numpy as np
>>> from streamssl.config import DriftConfig
>>> rng = np.random.default_rng(0)
>>> mon = DriftMonitor(DriftConfig(warmup=20))
>>> found = [mon.observe_loss(x) for x in rng.normal(5.0, 0.05, 200)]
>>> sum(map(len, found))
0
>>> after = [mon.observe_loss(x) for x in rng.normal(9.0, 0.05, 20)]
>>> sorted({d for batch in after for d in batch})
['loss/adwin', 'loss/page_hinkley']
"""

from __future__ import annotations

import collections
import logging
import math

import numpy as np
from river import stats

from streamssl.config import DriftConfig
from streamssl.observability.detectors import FLOORS, Channel
from streamssl.observability.metrics import LearnerMetrics
from streamssl.observability.signals import effective_rank, embedding_spread, input_statistics, linear_cka

__all__ = ["DriftMonitor", "SIGNALS", "DETECTORS", "effective_rank", "embedding_spread", "input_statistics", "linear_cka"]

SIGNALS = ("input", "embedding", "loss")
DETECTORS = ("adwin", "page_hinkley")
CKA_REFERENCES = ("previous", "initial")
# Which detector channels feed which reported signal.
CHANNELS = {
    "input_log_energy": "input",
    "input_centroid": "input",
    "input_high_band": "input",
    "embedding": "embedding",
    "loss": "loss",
}
LOSS_FADING = 0.1  # running mean the loss is divided by: ~10 steps, so slow learning is no jump
DISTANCE_FADING = 0.005  # running mean the embedding distance is divided by: ~200 embeddings
INPUT_CHANNELS = tuple(c for c, s in CHANNELS.items() if s == "input")
INPUT_STREAMS_MAX = 1024  # streams whose input detectors are kept (least recently seen dropped first)


class DriftMonitor:
    """Watches input, embeddings and loss for drift, and the probe set for representation change.

    ``observe_*`` return the detections they caused as ``"signal/detector"`` strings,
    count them in ``metrics.drift_detections{signal,detector}``, log them, and keep
    them for ``pop_detections`` (the run history). With ``metrics`` given, every
    label combination of the drift metrics exists from the start (detections at 0,
    CKA as NaN until the first probe check) so dashboards and alerts have series.
    """

    def __init__(self, cfg: DriftConfig, metrics: LearnerMetrics | None = None, log: logging.Logger | None = None):
        self.cfg = cfg
        self.metrics = metrics
        self.log = log or logging.getLogger(__name__)
        self._channels = {name: Channel(name, cfg, FLOORS[name]) for name in CHANNELS if name not in INPUT_CHANNELS}
        self._inputs: collections.OrderedDict[str, dict[str, Channel]] = collections.OrderedDict()  # per stream
        self._distance_mean: stats.EWMean | None = None
        self._centroid: list[stats.EWMean] | None = None
        self._loss_mean = stats.EWMean(LOSS_FADING)
        self._loss_seen = False
        self._recent: collections.deque[np.ndarray] = collections.deque(maxlen=cfg.spread_window)
        self._initial: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._pending: list[str] = []
        self.counts: dict[str, int] = {f"{s}/{d}": 0 for s in SIGNALS for d in DETECTORS}
        self.last_cka: dict[str, float] = {}
        self.spread: float = float("nan")
        self.effective_rank: float = float("nan")
        self._batches = 0  # observe_embeddings calls, for cfg.rank_every
        self._warmup_streams: set[str] = set()  # streams seen while the embedding signal warms up
        if metrics is not None:
            for s in SIGNALS:
                for d in DETECTORS:
                    metrics.drift_detections.labels(s, d)
            for name in CHANNELS:
                metrics.drift_signal.labels(name).set(float("nan"))
            for ref in CKA_REFERENCES:
                metrics.cka.labels(ref).set(float("nan"))
            metrics.embedding_spread.set(float("nan"))
            metrics.embedding_effective_rank.set(float("nan"))

    # --- signals ------------------------------------------------------------------

    def _note_streams(self, stream_ids) -> None:
        if self._channels["embedding"].warming:
            self._warmup_streams.update(stream_ids)

    def _feed(self, channel: str, value: float) -> list[str]:
        warmup = self.cfg.warmup * max(1, len(self._warmup_streams)) if channel == "embedding" else None
        z, fired = self._channels[channel].observe(value, warmup)
        return self._report(channel, value, z, fired)

    def _report(self, channel: str, value: float, z: float | None, fired: list[str], stream_id: str = "") -> list[str]:
        if z is not None and self.metrics is not None:
            self.metrics.drift_signal.labels(channel).set(z)
        signal = CHANNELS[channel]
        out = []
        for det in fired:
            key = f"{signal}/{det}"
            self.counts[key] += 1
            if self.metrics is not None:
                self.metrics.drift_detections.labels(signal, det).inc()
            where = f" in stream {stream_id!r}" if stream_id else ""
            self.log.warning("drift detected: %s by %s%s (value %.4g, z %.2f)", signal, det, where, value, z)
            out.append(key)
        self._pending.extend(out)
        return out

    def _input_channels(self, stream_id: str) -> dict[str, Channel]:
        chans = self._inputs.get(stream_id)
        if chans is None:
            chans = {name: Channel(name, self.cfg, FLOORS[name]) for name in INPUT_CHANNELS}
            self._inputs[stream_id] = chans
            while len(self._inputs) > INPUT_STREAMS_MAX:
                self._inputs.popitem(last=False)
        else:
            self._inputs.move_to_end(stream_id)
        return chans

    def observe_window(self, samples: np.ndarray, sample_rate: int, stream_id: str = "") -> list[str]:
        """One mono float window of input audio from ``stream_id`` (its own detectors); returns the detections it caused."""
        st = input_statistics(samples, sample_rate)
        values = {"input_log_energy": st["log_energy_db"], "input_centroid": st["spectral_centroid_hz"],
                  "input_high_band": st["high_band_db"]}
        found: list[str] = []
        for name, chan in self._input_channels(stream_id).items():
            z, fired = chan.observe(values[name])
            found += self._report(name, values[name], z, fired, stream_id)
        return sorted(set(found))

    def observe_embeddings(self, emb: np.ndarray, stream_ids=("",)) -> list[str]:
        """New embeddings (n, d) of ``stream_ids``: distance of each to the running centroid, then the collapse gauges."""
        self._note_streams(stream_ids)
        emb = np.asarray(emb, dtype=np.float64)
        if emb.ndim == 1:
            emb = emb[None, :]
        found: list[str] = []
        for row in emb:
            if not np.all(np.isfinite(row)):
                continue
            self._recent.append(row / max(float(np.linalg.norm(row)), 1e-12))
            if self._centroid is None or len(self._centroid) != row.size:
                self._centroid = [stats.EWMean(self.cfg.centroid_fading) for _ in range(row.size)]
                for m, v in zip(self._centroid, row.tolist()):
                    m.update(v)
                continue
            c = np.fromiter((m.get() for m in self._centroid), dtype=np.float64, count=row.size)
            distance = float(np.linalg.norm(row - c))
            if self._distance_mean is None:
                self._distance_mean = stats.EWMean(DISTANCE_FADING)
                self._distance_mean.update(distance)
            ref = self._distance_mean.get()
            self._distance_mean.update(distance)
            found += self._feed("embedding", distance / ref if ref > 1e-12 else 1.0)
            for m, v in zip(self._centroid, row.tolist()):
                m.update(v)
        self._batches += 1
        self._refresh_collapse_gauges(rank=(self._batches - 1) % self.cfg.rank_every == 0)
        return sorted(set(found))

    def _refresh_collapse_gauges(self, rank: bool) -> None:
        if len(self._recent) < 2:
            return
        recent = np.stack(self._recent)
        self.spread = embedding_spread(recent)
        if rank:
            self.effective_rank = effective_rank(recent)
        if self.metrics is not None:
            self.metrics.embedding_spread.set(self.spread)
            if rank:
                self.metrics.embedding_effective_rank.set(self.effective_rank)

    def observe_loss(self, loss: float) -> list[str]:
        """The total loss of one optimizer step, relative to its running mean of the last ~10 steps."""
        loss = float(loss)
        if not math.isfinite(loss):
            return []
        if not self._loss_seen:
            self._loss_mean.update(loss)
            self._loss_seen = True
            return []
        ref = self._loss_mean.get()
        self._loss_mean.update(loss)
        return self._feed("loss", loss / ref if abs(ref) > 1e-12 else 1.0)

    def pop_detections(self) -> list[str]:
        """Detections since the last call (for the run history), oldest first."""
        out, self._pending = self._pending, []
        return out

    # --- probe set ----------------------------------------------------------------

    def probe_due(self, step: int) -> bool:
        """True every ``cfg.check_every`` optimizer steps (and never at step 0)."""
        return step > 0 and step % self.cfg.check_every == 0

    def check_probe(self, probe_emb: np.ndarray) -> dict[str, float]:
        """Compare the probe set's new embeddings with the previous check and the first one.

        Returns ``{"previous": cka, "initial": cka}`` and sets ``metrics.cka``. The first
        check is its own reference (1.0). While the daemon is still filling the probe
        set, rows are compared over the windows both sides share (the first ones).
        """
        emb = np.asarray(probe_emb, dtype=np.float64)
        if emb.ndim != 2:
            raise ValueError(f"probe embeddings must be (n, d), got {emb.shape}")
        if self._initial is None:
            self._initial = emb.copy()
        out = {}
        for ref_name, ref in (("previous", self._previous), ("initial", self._initial)):
            ref = emb if ref is None else ref
            n = min(len(ref), len(emb))
            out[ref_name] = linear_cka(ref[:n], emb[:n]) if n >= 2 else float("nan")
        self._previous = emb.copy()
        self.last_cka = out
        if self.metrics is not None:
            for ref_name, value in out.items():
                self.metrics.cka.labels(ref_name).set(value)
        return out

    # --- checkpoint ---------------------------------------------------------------

    def state_dict(self) -> dict:
        """Plain numbers, lists and tensors (loads with ``torch.load(weights_only=True)``).

        Kept: each signal's warm-up scale, the embedding centroid, the recent
        embeddings behind the spread gauge, the CKA references, the detection counts.
        Not kept: the river detectors' windows (ADWIN's bucket structure lives in
        native code) — ``load_state_dict`` re-creates fresh detectors, which start
        judging again from the restored scale, so a restart costs detection history,
        never a false alarm from stale state.
        """
        import torch

        def t(a: np.ndarray | None):
            return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

        return {
            "channels": {name: ch.state_dict() for name, ch in self._channels.items()},
            "input_channels": {sid: {n: ch.state_dict() for n, ch in chans.items()} for sid, chans in self._inputs.items()},
            "distance_mean": self._distance_mean.get() if self._distance_mean is not None else None,
            "centroid": None if self._centroid is None else t(np.array([m.get() for m in self._centroid])),
            "loss_mean": self._loss_mean.get() if self._loss_seen else None,
            "recent": t(np.stack(self._recent)) if self._recent else None,
            "initial": t(self._initial),
            "previous": t(self._previous),
            "counts": dict(self.counts),
            "last_cka": dict(self.last_cka),
            "warmup_streams": sorted(self._warmup_streams),
        }

    def load_state_dict(self, sd: dict) -> None:
        def a(v) -> np.ndarray | None:
            if v is None:
                return None
            return (v.numpy() if hasattr(v, "numpy") else np.asarray(v)).astype(np.float64)

        for name, ch in self._channels.items():
            if name in sd.get("channels", {}):
                ch.load_state_dict(sd["channels"][name])
        self._inputs.clear()
        for sid, chans in sd.get("input_channels", {}).items():  # older checkpoints: input warms up afresh
            for name, state in chans.items():
                if name in INPUT_CHANNELS:
                    self._input_channels(sid)[name].load_state_dict(state)
        self._distance_mean = None
        if sd.get("distance_mean") is not None:
            self._distance_mean = stats.EWMean(DISTANCE_FADING)
            self._distance_mean.update(float(sd["distance_mean"]))
        self._warmup_streams = set(sd.get("warmup_streams", []))
        centroid = a(sd.get("centroid"))
        self._centroid = None
        if centroid is not None:
            # EWMean's first update sets its value exactly, which restores it.
            self._centroid = [stats.EWMean(self.cfg.centroid_fading) for _ in range(centroid.size)]
            for m, v in zip(self._centroid, centroid.tolist()):
                m.update(v)
        self._loss_mean = stats.EWMean(LOSS_FADING)
        self._loss_seen = sd.get("loss_mean") is not None
        if self._loss_seen:
            self._loss_mean.update(float(sd["loss_mean"]))
        recent = a(sd.get("recent"))
        self._recent.clear()
        if recent is not None:
            self._recent.extend(list(recent))
        self._initial = a(sd.get("initial"))
        self._previous = a(sd.get("previous"))
        self.counts.update({k: int(v) for k, v in sd.get("counts", {}).items() if k in self.counts})
        self.last_cka = {k: float(v) for k, v in sd.get("last_cka", {}).items()}
        if self.metrics is not None:
            for ref_name, value in self.last_cka.items():
                self.metrics.cka.labels(ref_name).set(value)
        self._refresh_collapse_gauges(rank=True)
