"""Linear-probe evaluation: are the learned embeddings linearly useful, and more than free features?

For every label kind of a labelled set (``streamssl.evaluation.dataset``), a logistic
regression is trained on standardised, frozen, utterance-level features and scored on
held-out utterances. Feature extractors (rows) are probed identically, on the same splits:

- ``ssl`` ("SSL per file (readout)"): the checkpoint, the project's readout over each whole
  utterance (``streamssl.learning.readout``) — what ``streamssl embed --per-file`` gives;
- ``live`` ("SSL window mean (live)"): the checkpoint through the live path: each utterance
  cut into capture windows and streamed through ``OnlineLearner.embed`` as a subscriber
  would receive it, the window embeddings averaged — what a user of the live stream (or of
  ``streamssl embed`` without ``--per-file``, averaging its rows) actually gets;
- ``offline``: the optional offline reference, the same model trained on the same audio
  for the same number of steps, but on shuffled examples (``streamssl.evaluation.reference``);
- ``random``: the same architecture and readout at random initialisation, untrained —
  separates what training added from what the architecture gives for free;
- ``logmel``: mean and standard deviation over time of the project's own log-mel
  front end — what any model must beat to have learned anything;
- ``mfcc``: the classic speaker/word baseline from the same front end: ``N_MFCC`` cepstral
  coefficients (orthonormal DCT-II of the log-mel frames) with their deltas and
  delta-deltas, each pooled as mean and standard deviation over time.

**Transfer splits.** With two label kinds (speaker, word) a probe must generalise across
the *other* kind: the speaker probe trains on half of the words and is tested on the
other half, the word probe trains on half of the speakers and is tested on the others.
A probe that memorised "this voice saying this word" scores nothing there. With one
label kind the split is stratified per class. Each split seed draws new halves; the
report gives mean and standard deviation over seeds.

**Runs.** The trained checkpoint is one model, but the offline reference and the
random-init network are draws: one reference run read 0.42 and another 0.46 on speaker,
so one draw cannot settle a ratio or a margin. A row may therefore hold several runs
(``streamssl eval --reference N --random-inits N``); its accuracies are then every run on
every split seed, its mean and std are over all of them (so the std holds the
run-to-run spread as well as the split noise), and ``run_means`` keeps each run's mean.

**Effective rank** (RankMe, Garrido et al. 2023) of each row's features over the whole
set: how many directions the embedding really uses. It needs no labels, so the learner
also exports it live.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

ROWS = ("ssl", "live", "offline", "random", "logmel", "mfcc")
ROW_TITLES = {
    "ssl": "SSL per file (readout)",
    "live": "SSL window mean (live)",
    "offline": "offline reference (shuffled)",
    "random": "random init (same arch)",
    "logmel": "mean+std log-mel",
    "mfcc": "mean+std MFCC+Δ+ΔΔ",
}
N_MFCC = 20  # cepstral coefficients kept (c0..c19), capped at the front end's n_mels
DELTA_WIDTH = 2  # frames each side of the delta regression (HTK's usual N = 2)
TEST_FRACTION = 0.25
DEFAULT_SEEDS = (0, 1, 2)

Embedder = Callable[[Sequence[np.ndarray]], np.ndarray]
Row = Embedder | Sequence[Embedder]  # one feature extractor, or independent runs of one (pooled)


@dataclass
class ProbeResult:
    """Accuracy of one feature extractor on one label kind, over split seeds (and runs, run-major)."""

    kind: str
    row: str
    accuracies: list[float]
    n_train: int
    n_test: int
    n_classes: int
    chance: float
    dim: int
    split: str  # "transfer across <kind>" or "stratified"
    run_means: list[float] = field(default_factory=list)  # one mean per run of the row (one entry: one run)

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies))


@dataclass
class EvalReport:
    """Everything ``streamssl eval`` prints and writes as JSON."""

    checkpoint: str
    data: str
    seeds: list[int]
    n_utterances: int
    model_step: int
    kinds: list[str]
    results: list[ProbeResult] = field(default_factory=list)
    effective_rank: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)  # what the set's labels.json says it is (``dataset_summary``)

    def result(self, kind: str, row: str) -> ProbeResult:
        return next(r for r in self.results if r.kind == kind and r.row == row)

    def accuracy(self, kind: str, row: str) -> float:
        """Mean accuracy over seeds."""
        return self.result(kind, row).mean

    def rows(self) -> list[str]:
        return list(dict.fromkeys(r.row for r in self.results))

    def online_vs_offline(self) -> dict[str, float]:
        """Per label kind, the checkpoint's mean accuracy over the offline reference's (empty without one)."""
        if "offline" not in self.rows() or "ssl" not in self.rows():
            return {}
        return {k: self.accuracy(k, "ssl") / max(self.accuracy(k, "offline"), 1e-12) for k in self.kinds}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["online_vs_offline"] = self.online_vs_offline()
        out["accuracy"] = {k: {r.row: r.mean for r in self.results if r.kind == k} for k in self.kinds}
        out["accuracy_std"] = {k: {r.row: r.std for r in self.results if r.kind == k} for k in self.kinds}
        return out


def dataset_summary(root) -> dict:
    """Which speakers a generated set holds, from its ``labels.json`` (empty for a plain tree of WAVs)."""
    import json
    from pathlib import Path

    from streamssl.evaluation.dataset import LABELS_FILE

    path = Path(root) / LABELS_FILE
    meta = json.loads(path.read_text()) if path.is_file() else {}
    if "voices" not in meta:
        return {}
    speakers = meta.get("speakers", [])
    return {
        "voices": meta["voices"], "side": meta.get("side"), "seed": meta.get("seed"),
        "engines": meta.get("engines", []), "persons": [s.get("person") or s.get("dir") for s in speakers],
        "real_persons": sum(bool(s.get("real_person")) for s in speakers),
    }


def effective_rank(x: np.ndarray) -> float:
    """RankMe of the features as they are (rows not normalised): ``observability.signals.effective_rank``."""
    from streamssl.observability.signals import effective_rank as rankme

    return rankme(np.asarray(x, dtype=np.float64), unit_rows=False)


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


def transfer_split(across: Sequence[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Utterance indices (train, test) with disjoint values of ``across``: half of them train, the rest test."""
    across = np.asarray(across)
    values = np.array(sorted(set(across.tolist())))
    if len(values) < 2:
        raise ValueError(f"a transfer split needs >= 2 values to hold out, got {len(values)}")
    held_in = np.random.default_rng(seed).permutation(values)[: len(values) // 2]
    inside = np.isin(across, held_in)
    return np.flatnonzero(inside), np.flatnonzero(~inside)


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


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_in, n_out) orthonormal DCT-II basis: ``x @ dct_matrix(n, k) == scipy.fft.dct(x, norm="ortho")[..., :k]``."""
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    basis = np.cos(np.pi * (2 * n + 1) * k / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[:, 0] /= np.sqrt(2.0)
    return basis


def deltas(x, width: int = DELTA_WIDTH):
    """Regression deltas over time of (frames, dims): sum_n n (x[t+n] - x[t-n]) / (2 sum_n n^2), edges repeated."""
    import torch

    t = x.shape[0]
    padded = torch.cat([x[:1].expand(width, -1), x, x[-1:].expand(width, -1)])
    out = sum(n * (padded[width + n: width + n + t] - padded[width - n: width - n + t]) for n in range(1, width + 1))
    return out / (2 * sum(n * n for n in range(1, width + 1)))


def pooled_mfcc(cfg, audio: Sequence[np.ndarray], n_mfcc: int = N_MFCC) -> np.ndarray:
    """(n, 6 * n_mfcc): mean and std over time of MFCCs, their deltas and delta-deltas.

    Mirrors ``pooled_logmel``: the learner's own log-mel front end per clip, then an
    orthonormal DCT-II over the mel bins keeps the first ``n_mfcc`` coefficients (c0
    included), and the clip's frames are pooled as mean and std (torch's, as there).
    Order: [mean c, mean Δ, mean ΔΔ, std c, std Δ, std ΔΔ].
    """
    import torch

    from streamssl.learning.features import LogMel

    front = LogMel(cfg.features)
    n_mfcc = min(n_mfcc, front.n_mels)
    dct = torch.from_numpy(dct_matrix(front.n_mels, n_mfcc)).float()
    rows = []
    with torch.no_grad():
        for x in audio:
            mel = front(torch.from_numpy(np.ascontiguousarray(x))[None])[0]  # (frames, n_mels)
            c = mel @ dct  # (frames, n_mfcc)
            d = deltas(c)
            frames = torch.cat([c, d, deltas(d)], dim=1)
            rows.append(torch.cat([frames.mean(0), frames.std(0)]).numpy())
    return np.stack(rows).astype(np.float32)


def learner_embedder(learner) -> Embedder:
    """Embed each clip on its own, from a fresh state (no padding, so silence never dilutes a short word)."""

    def embed(audio: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(learner.embed_segments(x[None, :].astype(np.float32))) for x in audio])

    return embed


def random_init_like(trained, device: str = "cpu", run: int = 0):
    """The same architecture and config from another seed, never updated, reading the same normalised input.

    It gets the trained learner's input statistics (the normaliser is not learned by
    gradient, and raw log-mel would be badly scaled for any network), so the row measures
    what the architecture gives for free, not what bad input scaling takes away.
    """
    from dataclasses import replace

    from streamssl.learning.learner import OnlineLearner

    cfg = trained.cfg
    seed = cfg.learner.seed + 1 + run  # run 0 is the network every earlier report probed
    untrained = OnlineLearner(replace(cfg, learner=replace(cfg.learner, seed=seed)), device=device)
    untrained.core.normaliser.load_state_dict(trained.core.normaliser.state_dict())
    return untrained


def live_embedder(learner, window_ms: int, dtype: str = "int16") -> Embedder:
    """Each clip through the live path (``streamssl.learning.files.embed_windows``), window embeddings averaged."""
    from streamssl.learning.files import embed_windows

    def embed(audio: Sequence[np.ndarray]) -> np.ndarray:
        rows = []
        for i, x in enumerate(audio):
            vectors = embed_windows(learner, x, f"eval-{i}", window_ms, dtype)
            rows.append(np.mean(vectors, axis=0))
        return np.stack(rows)

    return embed


def _splits(data, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    others = [k for k in data.kinds if k != kind]
    if others:
        other = others[0]
        train, test = transfer_split(data.labels(other), seed)
        return train, test, f"transfer across {other}"
    train, test = stratified_split(data.labels(kind), seed)
    return train, test, "stratified"


def evaluate(
    data,
    embedders: dict[str, Row],
    *,
    sample_rate: int,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    checkpoint: str = "",
    model_step: int = 0,
) -> EvalReport:
    """Probe every label kind of ``data`` (a ``LabelledSet``) with every row, on the same splits per seed.

    A row given as a sequence of embedders is that many runs of one extractor: each run is
    probed on every split, and the row pools them (module docstring, "Runs"). Runs are
    called one after another and their features dropped once scored, so a row of
    reference runs holds one trained model at a time.
    """
    audio = data.load_audio(sample_rate)
    report = EvalReport(checkpoint, str(data.root), list(seeds), len(audio), model_step, list(data.kinds))
    report.dataset = dataset_summary(data.root)
    labels = {kind: np.asarray(data.labels(kind)) for kind in data.kinds}
    splits = {kind: [_splits(data, kind, seed) for seed in seeds] for kind in data.kinds}
    for row, runs in embedders.items():
        runs = list(runs) if isinstance(runs, (list, tuple)) else [runs]
        accs: dict[str, list[list[float]]] = {kind: [] for kind in data.kinds}
        ranks, dim, report.seconds[row] = [], 0, 0.0
        for embed in runs:
            start = time.perf_counter()
            x = np.asarray(embed(audio), dtype=np.float64)
            report.seconds[row] += time.perf_counter() - start
            if not np.isfinite(x).all():
                raise ValueError(f"{row} features contain NaN or Inf")
            ranks.append(effective_rank(x))
            dim = x.shape[1]
            for kind in data.kinds:
                accs[kind].append([linear_probe(x, labels[kind], tr, te, seed)
                                   for seed, (tr, te, _) in zip(seeds, splits[kind])])
        report.effective_rank[row] = float(np.mean(ranks))
        for kind in data.kinds:
            train, test, how = splits[kind][0]
            n_classes = len(set(labels[kind][test].tolist()))
            report.results.append(ProbeResult(
                kind, row, [a for run in accs[kind] for a in run], len(train), len(test), n_classes,
                1.0 / max(n_classes, 1), dim, how, [float(np.mean(run)) for run in accs[kind]],
            ))
    return report


def print_report(report: EvalReport) -> None:
    """A rich table: one row per feature extractor, one column per label kind (mean ± std over seeds
    and runs), then online / offline when the reference was trained."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"linear probe — {report.n_utterances} utterances, step {report.model_step}, "
                        f"seeds {','.join(map(str, report.seeds))}")
    table.add_column("features")
    table.add_column("dim", justify="right")
    for kind in report.kinds:
        how = report.result(kind, report.rows()[0]).split
        table.add_column(f"{kind} acc\n({how})", justify="right")
    table.add_column("eff. rank", justify="right")
    for row in report.rows():
        r0 = report.result(report.kinds[0], row)
        cells = [f"{report.result(k, row).mean:.3f} ± {report.result(k, row).std:.3f}" for k in report.kinds]
        runs = f" ({len(r0.run_means)} runs)" if len(r0.run_means) > 1 else ""
        table.add_row(ROW_TITLES.get(row, row) + runs, str(r0.dim), *cells, f"{report.effective_rank[row]:.1f}")
    chance = {k: report.result(k, report.rows()[0]).chance for k in report.kinds}
    table.add_row("chance", "", *(f"{chance[k]:.3f}" for k in report.kinds), "", style="dim")
    console = Console(width=max(120, Console().width))
    console.print(table)
    if d := report.dataset:
        who = (f"{len(d['persons'])} held-out speakers ({d['real_persons']} real persons; {', '.join(d['engines'])})"
               if d["voices"] == "heldout" else f"{len(d['persons'])} espeak-ng variant speakers")
        console.print(f"data: {who}")
    if ratio := report.online_vs_offline():
        console.print("online / offline: " + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items()))
