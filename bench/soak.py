"""Soak: many real-time streams into one learner for a long time; does anything creep?

Starts a real ``streamssl learn`` and ``--streams`` real ``streamssl capture`` daemons
(espeak-ng speech at real-time pace, one seed per stream) on loopback, subscribes to
every embedding, and every ``--sample-s`` records the learner's and the captures' RSS
(``/proc/PID/status``), the learner's counters (received, missing inside seq gaps,
shed, untrained, published, drift detections, rejected) and the end-to-end latency of
the embeddings received in that interval. At the end it prints a table per
``--segment-min`` and writes JSON with:

- ``rss_slope_mb_per_hour``: least-squares slope of the learner's RSS after the warm-up
  (the first ``--warmup-min``): what a week of running would add;
- ``subscriber_gaps``: windows missing between consecutive embeddings of a stream
  session as the subscriber saw them (the learner's own ``missing_windows`` counts the
  capture-to-learner leg);
- drift detections over the run (stationary input: there should be none after warm-up);
- latency p50/p99 per segment.

``--record FILE.npz`` also keeps every embedding as the subscriber received it (stream id,
seq, model step, arrival time, the vector as float16), so the drift detectors can be
replayed offline on a real training run (``bench/drift_replay.py``).

    .venv/bin/python bench/soak.py --streams 16 --minutes 30 --out bench/soak.json

Asserts nothing: the figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from streamssl.procs import free_port, metric, scrape, spawn, terminate
from streamssl.serving.subscriber import subscribe

COUNTERS = {
    "received": "streamssl_learner_windows_received_total",
    "missing": "streamssl_learner_missing_windows_total",
    "seq_gaps": "streamssl_learner_sequence_gaps_total",
    "shed": "streamssl_learner_windows_shed_total",
    "untrained": "streamssl_learner_windows_untrained_total",
    "published": "streamssl_learner_embeddings_published_total",
    "drift_detections": "streamssl_learner_drift_detections_total",
    "rejected": "streamssl_learner_messages_rejected_total",
    "steps": "streamssl_learner_updates_total",
}


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Listener(threading.Thread):
    """Every embedding: latency past the window's last sample, and seq holes per stream session."""

    def __init__(self, endpoint: str, record: bool = False):
        super().__init__(daemon=True, name="soak-subscriber")
        self.endpoint = endpoint
        self.record: list | None = [] if record else None
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.last: dict[tuple[str, int], int] = {}
        self.gaps = 0
        self.frames = 0
        self.stop = threading.Event()

    def run(self) -> None:
        for frame in subscribe(self.endpoint, timeout=None):
            now = time.time_ns()
            with self.lock:
                key = (frame.stream_id, frame.session)
                prev = self.last.get(key)
                if prev is not None and frame.seq > prev + 1:
                    self.gaps += frame.seq - prev - 1
                self.last[key] = max(frame.seq, prev if prev is not None else -1)
                self.latencies.append((now - frame.capture_ns) / 1e6)
                self.frames += 1
                if self.record is not None:
                    self.record.append((frame.stream_id, frame.seq, frame.model_step, now,
                                        frame.embedding.astype(np.float16)))
            if self.stop.is_set():
                return

    def take(self) -> list[float]:
        with self.lock:
            out, self.latencies = self.latencies, []
        return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--config", default="configs/default.toml")
    p.add_argument("--sample-s", type=float, default=30.0)
    p.add_argument("--segment-min", type=float, default=5.0)
    p.add_argument("--warmup-min", type=float, default=5.0)
    p.add_argument("--out", default="bench/soak.json")
    p.add_argument("--log-dir", default=None)
    p.add_argument("--record", default=None, metavar="FILE.npz", help="keep every embedding for an offline replay")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="config overrides for every daemon, as for streamssl learn/capture")
    args = p.parse_args()
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="streamssl-soak-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    if any((log_dir / "checkpoints").glob("*")):  # a resumed learner brings its drift scale and step along
        print(f"{log_dir / 'checkpoints'} is not empty: a soak starts from a fresh learner", file=sys.stderr)
        return 2
    audio_ep, emb_ep, mport = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}", free_port()
    cfg = ["--config", args.config, *(a for o in args.overrides for a in ("--set", o))]
    learner = spawn(["learn", *cfg, "--audio-bind", audio_ep, "--embeddings-bind", emb_ep,
                     "--metrics-port", str(mport), "--set", f"learner.checkpoint_dir={log_dir / 'checkpoints'}"],
                    log_dir / "learn.log")
    deadline = time.monotonic() + 120
    while True:
        try:
            scrape(mport)
            break
        except OSError:
            if learner.poll() is not None or time.monotonic() > deadline:
                print(f"learner did not start; see {log_dir / 'learn.log'}", file=sys.stderr)
                return 1
            time.sleep(0.5)
    listener = Listener(emb_ep, record=bool(args.record))
    listener.start()
    captures = [
        spawn(["capture", *cfg, "--set", f"capture.stream_id=soak{i}", "--set", f"capture.connect={audio_ep}",
               "--set", "capture.source=speech", "--set", "capture.realtime=true", "--set", f"capture.seed={i}",
               "--set", "capture.metrics_port=0"], log_dir / f"capture-{i}.log")
        for i in range(args.streams)
    ]
    samples = []
    scrape_failures = 0
    t0 = time.monotonic()
    t0_ns = time.time_ns()
    print(f"soak: {args.streams} streams for {args.minutes:g} min, logs in {log_dir}", flush=True)
    try:
        while time.monotonic() - t0 < args.minutes * 60:
            time.sleep(args.sample_s)
            if learner.poll() is not None:
                print(f"learner exited {learner.returncode}", file=sys.stderr)
                break
            try:
                s = scrape(mport, timeout=15)
            except OSError as exc:  # a learner too busy to answer /metrics is itself a finding
                scrape_failures += 1
                print(f"/metrics did not answer: {exc}", flush=True)
                continue
            lat = listener.take()
            row = {
                "t_min": (time.monotonic() - t0) / 60,
                "learner_rss_mb": rss_mb(learner.pid),
                "captures_rss_mb": float(sum(rss_mb(c.pid) for c in captures)),
                "captures_alive": sum(c.poll() is None for c in captures),
                "frames": len(lat),
                "latency_ms": lat,
                "subscriber_gaps": listener.gaps,
                **{k: metric(s, name) for k, name in COUNTERS.items()},
                "drift_by_signal": {sig: metric(s, COUNTERS["drift_detections"], signal=sig)
                                    for sig in ("input", "embedding", "loss")},
            }
            samples.append(row)
            p99 = float(np.percentile(lat, 99)) if lat else float("nan")
            print(f"{row['t_min']:6.1f} min  rss {row['learner_rss_mb']:7.1f} MB  received {row['received']:8.0f}"
                  f"  missing {row['missing']:4.0f}  shed {row['shed']:6.0f}  drift {row['drift_detections']:3.0f}"
                  f"  p99 {p99:7.1f} ms  captures {row['captures_alive']}", flush=True)
    finally:
        for c in captures:
            terminate(c, timeout=10)
        listener.stop.set()
        terminate(learner, timeout=60)

    if not samples:
        return 1
    t = np.array([r["t_min"] for r in samples])
    rss = np.array([r["learner_rss_mb"] for r in samples])
    after = t >= args.warmup_min
    slope = float(np.polyfit(t[after] / 60, rss[after], 1)[0]) if after.sum() >= 3 else float("nan")
    segments = []
    bounds = np.arange(0, t[-1] + args.segment_min, args.segment_min)
    prev = {k: 0.0 for k in COUNTERS} | {"subscriber_gaps": 0}
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        rows = [r for r in samples if lo < r["t_min"] <= hi]
        if not rows:
            continue
        lat = [x for r in rows for x in r["latency_ms"]]
        last = rows[-1]
        seg = {
            "from_min": float(lo), "to_min": float(hi), "learner_rss_mb": last["learner_rss_mb"],
            "captures_rss_mb": last["captures_rss_mb"], "frames": len(lat),
            "latency_p50_ms": float(np.percentile(lat, 50)) if lat else None,
            "latency_p99_ms": float(np.percentile(lat, 99)) if lat else None,
            **{k: last[k] - prev[k] for k in (*COUNTERS, "subscriber_gaps")},
        }
        prev = {k: last[k] for k in (*COUNTERS, "subscriber_gaps")}
        segments.append(seg)
    print(f"\n{'minutes':>9s} {'RSS MB':>8s} {'received':>9s} {'published':>9s} {'shed':>6s} {'untrained':>9s}"
          f" {'missing':>7s} {'sub gaps':>8s} {'drift':>5s} {'p50 ms':>7s} {'p99 ms':>7s}")
    for s in segments:
        print(f"{s['from_min']:4.0f}-{s['to_min']:<4.0f} {s['learner_rss_mb']:8.1f} {s['received']:9.0f}"
              f" {s['published']:9.0f} {s['shed']:6.0f} {s['untrained']:9.0f} {s['missing']:7.0f}"
              f" {s['subscriber_gaps']:8.0f} {s['drift_detections']:5.0f} {s['latency_p50_ms'] or float('nan'):7.1f}"
              f" {s['latency_p99_ms'] or float('nan'):7.1f}")
    late = [r for r in samples if r["t_min"] >= args.warmup_min]
    drift_after_warmup = (samples[-1]["drift_detections"] - late[0]["drift_detections"]) if late else None
    print(f"\nlearner RSS slope after {args.warmup_min:g} min: {slope:+.1f} MB/hour; drift detections after warm-up: "
          f"{drift_after_warmup}; subscriber gaps {samples[-1]['subscriber_gaps']}; learner missing windows "
          f"{samples[-1]['missing']:.0f}; captures alive at the end {samples[-1]['captures_alive']}/{args.streams};"
          f" drift by signal {samples[-1]['drift_by_signal']}; /metrics unanswered {scrape_failures}x")
    result = {
        "streams": args.streams, "minutes": float(t[-1]), "config": args.config, "cpus": os.cpu_count(),
        "rss_slope_mb_per_hour": slope, "drift_detections_after_warmup": drift_after_warmup,
        "drift_by_signal": samples[-1]["drift_by_signal"], "metrics_scrape_failures": scrape_failures,
        "segments": segments,
        "samples": [{k: v for k, v in r.items() if k != "latency_ms"} for r in samples],
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.record:
        with listener.lock:
            rec = list(listener.record)
        np.savez(args.record, stream_id=np.array([r[0] for r in rec]), seq=np.array([r[1] for r in rec]),
                 model_step=np.array([r[2] for r in rec]), received_ns=np.array([r[3] for r in rec], dtype=np.int64),
                 embedding=np.stack([r[4] for r in rec]) if rec else np.zeros((0, 0), np.float16),
                 t0_ns=np.int64(t0_ns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
