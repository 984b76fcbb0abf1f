"""Linear-probe evaluation: are the learned embeddings linearly useful, and more than free features?

For every label kind of a labelled set (``streamssl.evaluation.dataset``), a logistic regression
is trained on standardised, frozen, utterance-level features and scored on held-out
utterances. Three feature extractors are probed identically, on the same split:

- ``ssl``: the checkpoint's pooled embedding (``OnlineLearner.embed_segments``);
- ``logmel``: mean and standard deviation over time of the project's own log-mel
  front end — what any model must beat to have learned anything;
- ``random``: the same architecture and config at random initialisation, untrained —
  separates what training added from what the architecture gives for free.

The split is stratified per class with a fixed seed, so every class appears on both
sides and two runs on the same data compare checkpoints, not splits.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

ROWS = ("ssl", "logmel", "random")
ROW_TITLES = {"ssl": "SSL embeddings (checkpoint)", "logmel": "mean+std log-mel", "random": "random init (same arch)"}
TEST_FRACTION = 0.25

Embedder = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclass
class ProbeResult:
    """Accuracy of one feature extractor on one label kind."""

    kind: str
    row: str
    accuracy: float
    n_train: int
    n_test: int
    n_classes: int
    chance: float
    dim: int


@dataclass
class EvalReport:
    """Everything ``streamssl eval`` prints and writes as JSON."""

    checkpoint: str
    data: str
    seed: int
    n_utterances: int
    model_step: int
    kinds: list[str]
    results: list[ProbeResult] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def accuracy(self, kind: str, row: str) -> float:
        return next(r.accuracy for r in self.results if r.kind == kind and r.row == row)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["accuracy"] = {k: {r.row: r.accuracy for r in self.results if r.kind == k} for k in self.kinds}
        return out


def stratified_split(labels: Sequence[str], seed: int, test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Utterance indices (train, test); every class with >= 2 utterances is on both sides.

    Classes with a single utterance cannot be both trained and tested and are left out.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train, test = [], []
    for cls in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == cls)
        if len(idx) < 2:
            continue
        idx = rng.permutation(idx)
        n_test = min(len(idx) - 1, max(1, int(round(test_fraction * len(idx)))))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.sort(np.array(train, dtype=int)), np.sort(np.array(test, dtype=int))


def linear_probe(features: np.ndarray, labels: Sequence[str], train: np.ndarray, test: np.ndarray, seed: int) -> float:
    """Test accuracy of logistic regression on standardised features (scaler fit on train only)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(labels)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))
    probe.fit(features[train], y[train])
    return float((probe.predict(features[test]) == y[test]).mean())


def pooled_logmel(cfg, audio: Sequence[np.ndarray]) -> np.ndarray:
    """(n, 2 * n_mels): mean and std over time of each clip's log-mel, from the learner's own front end."""
    import torch

    from streamssl.learning.features import LogMel

    front = LogMel(cfg.features)
    rows = []
    with torch.no_grad():
        for x in audio:
            mel = front(torch.from_numpy(np.ascontiguousarray(x))[None])[0]  # (frames, n_mels)
            rows.append(torch.cat([mel.mean(0), mel.std(0)]).numpy())
    return np.stack(rows).astype(np.float32)


def learner_embedder(learner) -> Embedder:
    """Embed each clip on its own (no padding, so silence never dilutes a short word)."""

    def embed(audio: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(learner.embed_segments(x[None, :].astype(np.float32))) for x in audio])

    return embed


def evaluate(
    data,
    embedders: dict[str, Embedder],
    *,
    sample_rate: int,
    seed: int = 0,
    checkpoint: str = "",
    model_step: int = 0,
) -> EvalReport:
    """Probe every label kind of ``data`` (a ``LabelledSet``) with every embedder, on one split per kind."""
    audio = data.load_audio(sample_rate)
    report = EvalReport(checkpoint, str(data.root), seed, len(audio), model_step, list(data.kinds))
    features = {}
    for row, embed in embedders.items():
        start = time.perf_counter()
        features[row] = np.asarray(embed(audio), dtype=np.float64)
        report.seconds[row] = time.perf_counter() - start
        if not np.isfinite(features[row]).all():
            raise ValueError(f"{row} features contain NaN or Inf")
    for kind in data.kinds:
        labels = data.labels(kind)
        train, test = stratified_split(labels, seed)
        n_classes = len(set(np.asarray(labels)[test].tolist()))
        for row, x in features.items():
            acc = linear_probe(x, labels, train, test, seed)
            report.results.append(ProbeResult(kind, row, acc, len(train), len(test), n_classes, 1.0 / max(n_classes, 1), x.shape[1]))
    return report


def print_report(report: EvalReport) -> None:
    """A rich table: one row per feature extractor, one column per label kind."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"linear probe — {report.n_utterances} utterances, step {report.model_step}, seed {report.seed}")
    table.add_column("features")
    table.add_column("dim", justify="right")
    for kind in report.kinds:
        table.add_column(f"{kind} acc", justify="right")
    rows = list(dict.fromkeys(r.row for r in report.results))
    for row in rows:
        dim = next(r.dim for r in report.results if r.row == row)
        table.add_row(ROW_TITLES.get(row, row), str(dim), *(f"{report.accuracy(k, row):.3f}" for k in report.kinds))
    chance = {k: next(r.chance for r in report.results if r.kind == k) for k in report.kinds}
    table.add_row("chance", "", *(f"{chance[k]:.3f}" for k in report.kinds), style="dim")
    Console().print(table)
