"""Replay recorded embeddings through the drift monitor: which detections does a real run raise?

``bench/soak.py --record FILE.npz`` keeps every embedding of a soak as the subscriber
received it (arrival order = the order the learner published and observed them). This
feeds them to a fresh ``DriftMonitor`` with the given config overrides, so a change to
the embedding detector can be judged on a real training run in seconds instead of a
30-minute soak:

    .venv/bin/python bench/drift_replay.py FILE.npz [--set drift.FIELD=VALUE ...] [--out replay.json]

Prints each detection (minute of the run, model step, signal/detector) and the count;
writes JSON. Asserts nothing. Input detections are not replayed (the recording holds
embeddings, not audio).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from streamssl.config import DriftConfig
from streamssl.observability.drift import DriftMonitor


def parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        field = key.removeprefix("drift.")
        default = getattr(DriftConfig(), field)
        out[field] = type(default)(value)
    return out


def replay(record: dict, cfg: DriftConfig, batch: int = 16) -> list[dict]:
    """Feed the recording in arrival order, ``batch`` embeddings per call (about one serving round)."""
    mon = DriftMonitor(cfg)
    emb = record["embedding"].astype(np.float32)
    sids = record["stream_id"].tolist()
    steps = record["model_step"]
    t_min = (record["received_ns"] - int(record["t0_ns"])) / 60e9
    found = []
    for lo in range(0, len(emb), batch):
        hi = min(lo + batch, len(emb))
        for det in mon.observe_embeddings(emb[lo:hi], sids[lo:hi]):
            found.append({"index": hi - 1, "t_min": float(t_min[hi - 1]), "model_step": int(steps[hi - 1]), "detection": det})
    return found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("record")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="drift.FIELD=VALUE")
    p.add_argument("--batch", type=int, default=16, help="embeddings per observe call")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    record = dict(np.load(args.record))
    cfg = replace(DriftConfig(), **parse_overrides(args.overrides))
    found = replay(record, cfg, args.batch)
    minutes = (int(record["received_ns"][-1]) - int(record["t0_ns"])) / 60e9 if len(record["received_ns"]) else 0.0
    print(f"{len(record['embedding'])} embeddings over {minutes:.1f} min, model steps "
          f"{int(record['model_step'].min())}-{int(record['model_step'].max())}")
    for d in found:
        print(f"  {d['t_min']:6.2f} min  step {d['model_step']:6d}  {d['detection']}")
    print(f"detections: {len(found)}")
    if args.out:
        Path(args.out).write_text(json.dumps({"record": args.record, "overrides": args.overrides,
                                              "minutes": minutes, "detections": found}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
