"""Why a feature set clusters well or badly online: the geometry of a ``bench/events.py --dump``.

For each feature set of the dump (trained online, untrained network, pooled log-mel),
on the windows from ``--skip-min`` to the first novel segment:

- **separation**: standardised per dimension, projected on the leading ``--components``
  principal components and scaled to RMS norm 1 (the clusterer's space, fitted offline
  here), the mean distance between the kinds' centroids over the RMS distance of a window
  to its own kind's centroid. A fixed-radius clusterer needs a radius between the two;
  the larger the ratio, the wider that gap. The offline k-means ARI (as many clusters as
  kinds) says what the same space holds when the number of kinds is known;
- **drift**: how far each kind's centroid moves between consecutive 2-minute slices,
  in the same units (the clusterer's radius is 0.8 of them): the learner keeps
  training, so the embeddings of one sound move;
- **novelty by nearest neighbour**: each window's distance (full standardised space) to
  its nearest earlier window, at least ``--gap`` windows back (a new sound's own
  previous windows would make it familiar), over the median of that distance across the
  preceding 5 minutes. Reported: its largest value before the novel kind starts, and its
  values on the novel kind's first windows; a kind that is new to the features must
  score above the calm maximum, in any space and with any threshold;
- the kind of each novel window's nearest earlier window (what the features take it for);
- **novelty off the components** (the clusterer's second test, the Q statistic): the
  energy of a standardised window outside the leading components fitted on the calm
  windows, in RMS units of the calm windows' own; its calm maximum and the novel
  kind's first windows.

    .venv/bin/python bench/events.py --seed 1 --threads 1 --dump /tmp/ev_s1.npz --out /tmp/ev_s1.json
    .venv/bin/python bench/events_geometry.py /tmp/ev_s1.npz

Asserts nothing: the numbers go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamssl.capture.sources.scenes import NOVEL_KIND  # noqa: E402


def standardised(x: np.ndarray, fit: np.ndarray | None = None) -> np.ndarray:
    """``x`` standardised per dimension with the statistics of ``fit`` (default: ``x`` itself)."""
    fit = x if fit is None else fit
    return (x - fit.mean(0)) / (fit.std(0) + 1e-9)


def leading_components(z: np.ndarray, components: int) -> tuple[np.ndarray, float]:
    """Standardised rows -> their leading principal directions (dim, components) and the
    fraction of the variance those hold."""
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    return vt[:components].T, float((s[:components] ** 2).sum() / (s ** 2).sum())


def clusterer_space(x: np.ndarray, components: int) -> tuple[np.ndarray, float]:
    """The clusterer's space fitted offline: standardised, leading components, RMS norm 1;
    and the fraction of the variance those components hold."""
    z = standardised(x)
    basis, held = leading_components(z, components)
    y = z @ basis
    return y / np.sqrt((y ** 2).sum(1).mean()), held


def separation(y: np.ndarray, labels: np.ndarray) -> dict:
    """``y``: windows in the clusterer's space (``clusterer_space``)."""
    kinds = sorted(set(labels))
    centres = np.array([y[labels == k].mean(0) for k in kinds])
    within = float(np.sqrt(np.mean([((y[labels == k] - centres[i]) ** 2).sum(1).mean() for i, k in enumerate(kinds)])))
    pairs = [np.linalg.norm(centres[i] - centres[j]) for i in range(len(kinds)) for j in range(i + 1, len(kinds))]
    km = KMeans(len(kinds), n_init=10, random_state=0).fit_predict(y)
    return {"within": within,
            "between_mean": float(np.mean(pairs)), "between_min": float(np.min(pairs)),
            "ratio": float(np.mean(pairs) / within), "kmeans_ari": float(adjusted_rand_score(labels, km))}


def drift(y: np.ndarray, labels: np.ndarray, slice_windows: int) -> dict:
    """``y``: windows in the clusterer's space, in time order."""
    out = {}
    for kind in sorted(set(labels)):
        idx = np.nonzero(labels == kind)[0]
        centres = [y[idx[(idx >= a) & (idx < a + slice_windows)]].mean(0)
                   for a in range(0, len(y), slice_windows) if ((idx >= a) & (idx < a + slice_windows)).sum() > 5]
        out[kind] = [float(np.linalg.norm(b - a)) for a, b in zip(centres, centres[1:])]
    return out


def nearest_neighbour_novelty(x: np.ndarray, labels: np.ndarray, start: int, end: int, gap: int,
                              reference: int, first: int) -> dict:
    z = standardised(x, fit=x[:end])
    nn = np.full(len(x), np.nan)
    nn_kind = [""] * len(x)
    for i in range(start, len(x)):
        d = np.sqrt(((z[: min(i - gap, end)] - z[i]) ** 2).sum(1))  # neighbours: calm windows only
        j = int(np.argmin(d))
        nn[i], nn_kind[i] = d[j], str(labels[j])
    ratio = np.array([nn[i] / np.nanmedian(nn[max(start, i - reference):i]) if i > start + 10 else np.nan
                      for i in range(len(x))])
    index = np.arange(len(x))
    calm = (index >= start + 10) & (index < end)
    novel = np.nonzero(labels == NOVEL_KIND)[0]
    return {"calm_max": float(np.nanmax(ratio[calm])), "calm_q995": float(np.nanquantile(ratio[calm], 0.995)),
            "novel_first": [round(float(r), 2) for r in ratio[novel[:first]]],
            "novel_taken_for": dict(Counter(nn_kind[i] for i in novel).most_common())}


def residual_novelty(x: np.ndarray, labels: np.ndarray, start: int, end: int, components: int, first: int) -> dict:
    z = standardised(x, fit=x[start:end])
    basis, _ = leading_components(z[start:end], components)
    y = z @ basis
    residual = np.sqrt(np.maximum((z ** 2).sum(1) - (y ** 2).sum(1), 0.0))
    rms = np.sqrt((residual[start:end] ** 2).mean())
    novel = np.nonzero(labels == NOVEL_KIND)[0]
    return {"calm_max": float(residual[start:end].max() / rms),
            "novel_first": [round(float(r), 2) for r in residual[novel[:first]] / rms]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dump")
    p.add_argument("--skip-min", type=float, default=2.0)
    p.add_argument("--components", type=int, default=8)
    p.add_argument("--gap", type=int, default=20, help="windows back before a window may be a neighbour")
    p.add_argument("--out")
    args = p.parse_args()
    d = np.load(args.dump)
    labels, window_s = np.array(d["labels"]), float(d["window_s"])
    start = int(args.skip_min * 60 / window_s)
    end = int(float(d["novel_start"]) / window_s) if float(d["novel_start"]) > 0 else len(labels)
    slice_windows, reference = int(120 / window_s), int(300 / window_s)
    result = {}
    for name in ("trained", "random_init", "logmel"):
        x = d[name].astype(np.float64)
        y, held = clusterer_space(x[start:end], args.components)
        result[name] = {
            "separation": {"variance_in_components": held} | separation(y, labels[start:end]),
            "centroid_moves_per_2min": drift(y, labels[start:end], slice_windows),
            "nearest_neighbour_novelty": nearest_neighbour_novelty(x, labels, start, end, args.gap, reference, 8),
            "residual_novelty": residual_novelty(x, labels, start, end, args.components, 8),
        }
    print(f"{'features':12s} {'var in PCs':>10s} {'within':>6s} {'between':>7s} {'ratio':>5s} {'k-means ARI':>11s}  "
          f"{'centroid moves / 2 min':32s} {'NN calm max':>11s}  novel kind's first windows; taken for")
    for name, r in result.items():
        s, nn = r["separation"], r["nearest_neighbour_novelty"]
        moves = " ".join(f"{k[:5]} {max(v):.2f}" for k, v in r["centroid_moves_per_2min"].items() if v)
        print(f"{name:12s} {s['variance_in_components']:10.2f} {s['within']:6.2f} {s['between_mean']:7.2f} "
              f"{s['ratio']:5.2f} {s['kmeans_ari']:11.2f}  {moves:32s} {nn['calm_max']:11.2f}  "
              f"{nn['novel_first']}; {nn['novel_taken_for']}")
    print(f"\n{'features':12s} {'off-component residual: calm max':>33s}  novel kind's first windows")
    for name, r in result.items():
        q = r["residual_novelty"]
        print(f"{name:12s} {q['calm_max']:33.2f}  {q['novel_first']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
