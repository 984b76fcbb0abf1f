"""The plots of a run: loss, drift and throughput over time, from its history.

``history.py`` writes ``<checkpoint_dir>/metrics.jsonl``; ``streamssl report`` and the
demo turn it into PNGs here (``History`` is re-exported for them).
"""

from __future__ import annotations

import logging
from pathlib import Path

from streamssl.observability.history import History

__all__ = ["History", "plot"]

log = logging.getLogger(__name__)


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
