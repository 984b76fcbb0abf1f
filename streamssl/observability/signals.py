"""The numbers the drift monitor computes from audio and embeddings, as plain functions.

Each takes numpy arrays and returns floats, so tests, notebooks and the evaluation code
can use them without a monitor: ``linear_cka`` (representation change on the probe set),
``embedding_spread`` and ``effective_rank`` (collapse), ``input_statistics`` (what the
input detectors watch).
"""

from __future__ import annotations

import numpy as np

HIGH_BAND_HZ = 4000.0


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
    """Mean per-dimension standard deviation of the L2-normalised rows of ``emb`` (n, d), times sqrt(d).

    About 1 for embeddings spread evenly over the sphere, whatever d is, and 0 when every
    row points the same way (collapse). The sqrt(d) makes one alert floor fit every
    readout size: the published embedding grew from 256 to 1024 numbers with the
    statistics readout, and the unscaled value of a healthy model fell from ~0.06 to ~0.009.

    >>> round(embedding_spread(np.ones((10, 4))), 6)
    0.0
    >>> 0.8 < embedding_spread(np.random.default_rng(0).normal(size=(2000, 64))) < 1.2
    True
    """
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] < 2:
        return float("nan")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = emb / np.maximum(norms, 1e-12)
    return float(unit.std(axis=0).mean() * np.sqrt(emb.shape[1]))


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


def singular_values(x: np.ndarray) -> np.ndarray:
    """Singular values of ``x`` (n, d) from the eigenvalues of its smaller Gram matrix.

    The live gauge runs on the serving thread: for 256 x 1024 embeddings a full SVD took
    70 ms (1-5 s when OpenBLAS threads met a loaded CPU), the 256 x 256 Gram matrix and
    its ``eigvalsh`` 16 ms. Squaring the matrix loses precision below ~1e-8 of the
    largest value, which the effective rank does not notice (tested against the SVD).
    """
    gram = x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x
    return np.sqrt(np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None))


def effective_rank(emb: np.ndarray, *, unit_rows: bool = True, eps: float = 1e-12) -> float:
    """RankMe effective rank (Garrido et al. 2023) of the rows of ``emb`` (n, d).

    Rows are L2-normalised (like the spread gauge; ``unit_rows=False`` keeps their length,
    for features whose scale carries meaning) and the matrix column-centred; with
    its singular values s_i, p_i = s_i / sum(s) + eps and the effective rank is
    exp(-sum p_i log p_i): about min(n, d) when the embeddings use every direction, 1
    when they vary along one line, and ~1 (the eps floor) when they are all the same.

    Why this and not only ``embedding_spread``: the spread is the mean per-dimension
    standard deviation, a measure of *size*, blind to how many directions carry it. A
    healthy model's embeddings share a large common component, so their normalised rows
    sit in one cap of the sphere and vary a little in every direction (spread ~0.05 on
    the test model). A model in dimensional collapse maps every input onto one line
    through the origin and still swings along it: its normalised rows flip between two
    opposite points and the spread reads *larger* than the healthy model's (see
    ``tests/test_drift.py``). The effective rank counts the directions, so it falls
    for dimensional and for complete collapse alike.

    >>> rng = np.random.default_rng(0)
    >>> round(effective_rank(rng.normal(size=(256, 4))), 1) > 3.5
    True
    >>> line = np.outer(rng.normal(size=256), rng.normal(size=16)) + 1e-6
    >>> round(effective_rank(line), 1)
    1.0
    """
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] < 2:
        return float("nan")
    if unit_rows:
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    s = singular_values(emb - emb.mean(axis=0, keepdims=True))
    total = s.sum()
    if not np.isfinite(total):
        return float("nan")
    if total <= eps:
        return 1.0  # every row the same point: one (degenerate) direction at most
    p = s / total + eps
    return float(np.exp(-(p * np.log(p)).sum()))
