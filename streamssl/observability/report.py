"""A run's history on disk and its plots: loss, drift and throughput over time.

The learner daemon appends one JSON object per second of learning to
``<checkpoint_dir>/metrics.jsonl`` (``History.append``); ``streamssl report`` and the
demo turn it into PNGs. JSON lines, not a database: appendable by one writer, readable
while it grows, and a torn last line (crash mid-write) is skipped, not fatal.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)


class History:
    """Append-only JSON-lines log of learning progress; one record per call, flushed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")

    def append(self, record: dict) -> None:
        """Write ``record`` as one line and flush; NaN/Inf become null (strict JSON)."""
        try:
            self._file.write(json.dumps(_finite(record), allow_nan=False) + "\n")
            self._file.flush()
        except (OSError, TypeError, ValueError) as exc:  # a full disk or odd value must not stop learning
            log.error("history %s: %s", self.path, exc)

    def close(self) -> None:
        self._file.close()

    @staticmethod
    def read(path: str | Path) -> list[dict]:
        """Every complete record in the file, in order."""
        records = []
        for line in Path(path).read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # torn line from an interrupted write
        return records


def _finite(value):
    """``value`` with NaN/Inf floats replaced by None and numpy scalars made plain, recursively."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy / torch scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
    ax.legend(loc="upper left")
    if any(r.get("audio_seconds") is not None for r in records):
        ax2 = ax.twinx()
        ax2.plot(minutes, [r.get("audio_seconds") or 0 for r in records], color="tab:orange", linewidth=1,
                 label="audio seconds learned, last minute")
        ax2.set_ylabel("audio seconds")
        ax2.legend(loc="upper right")
    written.append(_save(fig, out_dir / "throughput.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
