"""Drift and collapse monitoring: river detectors on three signals, CKA on a probe set.

What is watched (DESIGN.md, "Drift"):

- **input** — per audio window, three statistics from ``input_statistics``: log-energy,
  spectral centroid and the log-energy above 4 kHz (the band where speech and noise
  differ most). Speech windows are bimodal (talk vs pause), so no single statistic
  separates speech from noise *and* from tones; each gets its own detectors and any
  of them reports ``input``.
- **embedding** — Euclidean distance of each new embedding to a running centroid (an
  exponentially weighted mean per dimension, ``river.stats.EWMean``). A change of
  input or of the model moves embeddings away from where they used to be. (Not the
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
in standard deviations. ADWIN tests for a cut every ``cfg.adwin_clock`` observations
(river's default 32 would add up to 16 s of delay at 500 ms windows).

Representation drift is measured directly: the daemon re-embeds a fixed probe set of
windows every ``cfg.check_every`` updates and ``check_probe`` compares the result with
the previous check and with the first one by linear CKA (1 = same geometry).

Collapse: ``embedding_spread`` of the recent embeddings (mean per-dimension std of the
L2-normalised rows) falls towards 0 when every input maps to the same point.

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
from typing import Any

import numpy as np
from river import drift, stats

from streamssl.config import DriftConfig
from streamssl.observability.metrics import LearnerMetrics

SIGNALS = ("input", "embedding", "loss")
DETECTORS = ("adwin", "page_hinkley")
CKA_REFERENCES = ("previous", "initial")
HIGH_BAND_HZ = 4000.0
# Standardisation floors, in each statistic's own unit: below these a warm-up spread is
# noise of the measurement, not of the signal.
FLOORS = {
    "input_log_energy": 1.0,  # dB
    "input_centroid": 50.0,  # Hz
    "input_high_band": 1.0,  # dB
    "embedding": 1e-6,  # distance, in the embedding's own unit
    "loss": 0.01,  # ratio to the running mean
}
# Which detector channels feed which reported signal.
CHANNELS = {
    "input_log_energy": "input",
    "input_centroid": "input",
    "input_high_band": "input",
    "embedding": "embedding",
    "loss": "loss",
}
LOSS_FADING = 0.1  # running mean the loss is divided by: ~10 steps, so slow learning is no jump


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) of two representations of the same n examples.

    ``x`` is (n, d1), ``y`` is (n, d2). With column-centred X and Y,
    CKA = ||Yᵀ X||²_F / (||Xᵀ X||_F · ||Yᵀ Y||_F): 1 for the same geometry up to
    rotation and isotropic scale, near 0 for unrelated ones. NaN if either side is
    constant (no geometry to compare).

    >>> x = np.random.default_rng(0).normal(size=(50, 8))
    >>> round(linear_cka(x, 3.0 * x @ np.linalg.qr(np.random.default_rng(1).normal(size=(8, 8)))[0]), 6)
    1.0
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need (n, d) arrays with the same n, got {x.shape} and {y.shape}")
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    if denom <= 0 or not np.isfinite(denom):
        return float("nan")
    return float(np.linalg.norm(y.T @ x) ** 2 / denom)


def embedding_spread(emb: np.ndarray) -> float:
    """Mean per-dimension standard deviation of the L2-normalised rows of ``emb`` (n, d).

    About 1/sqrt(d) for embeddings spread evenly over the sphere, 0 when every row
    points the same way (collapse).

    >>> round(embedding_spread(np.ones((10, 4))), 6)
    0.0
    """
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] < 2:
        return float("nan")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = emb / np.maximum(norms, 1e-12)
    return float(unit.std(axis=0).mean())


def input_statistics(samples: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Log-energy (dB re full scale), spectral centroid (Hz) and high-band log-energy of a mono window.

    Keys: ``log_energy_db``, ``spectral_centroid_hz``, ``high_band_db`` (energy above
    4 kHz, or above half the Nyquist frequency for low sample rates).
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return {"log_energy_db": -100.0, "spectral_centroid_hz": 0.0, "high_band_db": -100.0}
    power = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1.0 / sample_rate)
    total = power.sum()
    centroid = float((power * freqs).sum() / total) if total > 0 else 0.0
    # Hann window power gain 3/8; scaled so a full-scale sine reads about -3 dB like log-energy.
    norm = 2.0 / (x.size**2 * 0.375)
    cut = min(HIGH_BAND_HZ, sample_rate / 4)
    high = power[freqs >= cut].sum() * norm
    return {
        "log_energy_db": float(10 * np.log10(np.mean(x * x) + 1e-10)),
        "spectral_centroid_hz": centroid,
        "high_band_db": float(10 * np.log10(high + 1e-10)),
    }


class _Channel:
    """One scalar signal: warm-up standardisation, then ADWIN and Page-Hinkley on z-scores."""

    def __init__(self, name: str, cfg: DriftConfig):
        self.name = name
        self.cfg = cfg
        self._warm: list[float] = []  # raw values until the scale is fixed
        self.mean: float | None = None
        self.std: float | None = None
        self._detectors = self._make_detectors()

    def _make_detectors(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "adwin": drift.ADWIN(delta=c.adwin_delta, clock=c.adwin_clock),
            "page_hinkley": drift.PageHinkley(delta=c.ph_delta, threshold=c.ph_threshold, mode="both"),
        }

    def update(self, value: float) -> tuple[float | None, list[str]]:
        """Feed one raw value; returns (z-score or None during warm-up, detectors that fired)."""
        if not math.isfinite(value):
            return None, []
        if self.mean is None:
            self._warm.append(value)
            if len(self._warm) >= self.cfg.warmup:
                self._fix_scale()
            return None, []
        z = (value - self.mean) / self.std
        fired = []
        for name, det in self._detectors.items():
            det.update(z)
            if det.drift_detected:
                fired.append(name)
        return z, fired

    def _fix_scale(self) -> None:
        var = stats.Var()
        for v in self._warm:
            var.update(v)
        self.mean = float(np.mean(self._warm))
        self.std = max(math.sqrt(max(var.get(), 0.0)), FLOORS[self.name])
        self._warm = []

    def state_dict(self) -> dict:
        return {"warm": list(self._warm), "mean": self.mean, "std": self.std}

    def load_state_dict(self, sd: dict) -> None:
        self._warm = [float(v) for v in sd.get("warm", [])]
        self.mean = None if sd.get("mean") is None else float(sd["mean"])
        self.std = None if sd.get("std") is None else float(sd["std"])
        self._detectors = self._make_detectors()


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
        self._channels = {name: _Channel(name, cfg) for name in CHANNELS}
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
        if metrics is not None:
            for s in SIGNALS:
                for d in DETECTORS:
                    metrics.drift_detections.labels(s, d)
            for name in CHANNELS:
                metrics.drift_signal.labels(name).set(float("nan"))
            for ref in CKA_REFERENCES:
                metrics.cka.labels(ref).set(float("nan"))
            metrics.embedding_spread.set(float("nan"))

    # --- signals ------------------------------------------------------------------

    def _feed(self, channel: str, value: float) -> list[str]:
        z, fired = self._channels[channel].update(value)
        if z is not None and self.metrics is not None:
            self.metrics.drift_signal.labels(channel).set(z)
        signal = CHANNELS[channel]
        out = []
        for det in fired:
            key = f"{signal}/{det}"
            self.counts[key] += 1
            if self.metrics is not None:
                self.metrics.drift_detections.labels(signal, det).inc()
            self.log.warning("drift detected: %s by %s (value %.4g, z %.2f)", signal, det, value, z)
            out.append(key)
        self._pending.extend(out)
        return out

    def observe_window(self, samples: np.ndarray, sample_rate: int) -> list[str]:
        """One mono float window of input audio; returns the detections it caused."""
        st = input_statistics(samples, sample_rate)
        found = self._feed("input_log_energy", st["log_energy_db"])
        found += self._feed("input_centroid", st["spectral_centroid_hz"])
        found += self._feed("input_high_band", st["high_band_db"])
        return sorted(set(found))

    def observe_embeddings(self, emb: np.ndarray) -> list[str]:
        """New embeddings (n, d): distance of each to the running centroid, then the spread gauge."""
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
            found += self._feed("embedding", float(np.linalg.norm(row - c)))
            for m, v in zip(self._centroid, row.tolist()):
                m.update(v)
        if len(self._recent) >= 2:
            self.spread = embedding_spread(np.stack(self._recent))
            if self.metrics is not None:
                self.metrics.embedding_spread.set(self.spread)
        return sorted(set(found))

    def observe_loss(self, loss: float) -> list[str]:
        """The total loss of one update, relative to its running mean of the last ~10 steps."""
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

    def probe_due(self, update_count: int) -> bool:
        """True every ``cfg.check_every`` updates (and never at update 0)."""
        return update_count > 0 and update_count % self.cfg.check_every == 0

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
            "centroid": None if self._centroid is None else t(np.array([m.get() for m in self._centroid])),
            "loss_mean": self._loss_mean.get() if self._loss_seen else None,
            "recent": t(np.stack(self._recent)) if self._recent else None,
            "initial": t(self._initial),
            "previous": t(self._previous),
            "counts": dict(self.counts),
            "last_cka": dict(self.last_cka),
        }

    def load_state_dict(self, sd: dict) -> None:
        def a(v) -> np.ndarray | None:
            if v is None:
                return None
            return (v.numpy() if hasattr(v, "numpy") else np.asarray(v)).astype(np.float64)

        for name, ch in self._channels.items():
            if name in sd.get("channels", {}):
                ch.load_state_dict(sd["channels"][name])
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
            if len(self._recent) >= 2:
                self.spread = embedding_spread(np.stack(self._recent))
                self.metrics.embedding_spread.set(self.spread)
