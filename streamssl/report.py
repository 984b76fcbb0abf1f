"""A run's history on disk and its plots: loss, drift and throughput over time.

The learner daemon appends one JSON object per second of learning to
``<checkpoint_dir>/metrics.jsonl`` (``History.append``); ``streamssl report`` and the
demo turn it into PNGs. JSON lines, not a database: appendable by one writer, readable
while it grows, and a torn last line (crash mid-write) is skipped, not fatal.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class History:
    """Append-only JSON-lines log of learning progress; one record per call, flushed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")

    def append(self, record: dict) -> None:
        try:
            self._file.write(json.dumps(record, allow_nan=False, default=_finite) + "\n")
            self._file.flush()
        except OSError as exc:  # a full disk must not stop learning
            log.error("history %s: %s", self.path, exc)

    def close(self) -> None:
        self._file.close()

    @staticmethod
    def read(path: str | Path) -> list[dict]:
        records = []
        for line in Path(path).read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # torn line from an interrupted write
        return records


def _finite(value):
    raise TypeError(f"not JSON serialisable: {value!r}")


def plot(records: list[dict], out_dir: str | Path) -> list[Path]:
    """Write losses.png, drift.png and throughput.png; returns the files written."""
    if not records:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = records[0]["time"]
    minutes = [(r["time"] - t0) / 60 for r in records]
    written = []

    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = sorted({k for r in records for k in r.get("losses", {})})
    for name in names:
        xs = [m for m, r in zip(minutes, records) if name in r.get("losses", {})]
        ys = [r["losses"][name] for r in records if name in r.get("losses", {})]
        ax.plot(xs, ys, label=name, linewidth=2 if name == "total" else 1.2)
    ax.set(xlabel="minutes", ylabel="loss", title="Self-supervised losses")
    ax.grid(alpha=0.3)
    ax.legend()
    written.append(_save(fig, out_dir / "losses.png"))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, label in (("cka_initial", "CKA vs initial probe"), ("cka_previous", "CKA vs previous check")):
        pts = [(m, r[key]) for m, r in zip(minutes, records) if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), marker=".", label=label)
    for m, r in zip(minutes, records):
        for det in r.get("detections", []):
            ax.axvline(m, color="red", alpha=0.3)
            ax.text(m, 0.02, det, rotation=90, fontsize=7, color="red", va="bottom")
    ax.set(xlabel="minutes", ylabel="linear CKA", ylim=(0, 1.05), title="Representation drift (red: detections)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    written.append(_save(fig, out_dir / "drift.png"))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(minutes, [r.get("rtf") or 0 for r in records], label="real-time factor (audio s / busy s)")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="minutes", ylabel="x real time", title="Learner throughput")
    ax.grid(alpha=0.3)
    ax.legend()
    written.append(_save(fig, out_dir / "throughput.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
