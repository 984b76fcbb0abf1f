"""Audio seconds learned per wall second by ``OnlineLearner.update`` on a config (default: the default model).

Feeds real espeak-ng speech windows (``capture.window_ms`` long, several streams) through
``update`` with ``n`` new windows per call, for each n in ``--batches``: n = 1 is the
daemon keeping up (one arrival per step), n = ``learner.batch_max`` is the daemon
catching up on a backlog (adaptive batching). All three losses as configured. Prints a
table and writes JSON; no assertion — timings belong to the machine they were taken on.

    .venv/bin/python bench/learner_rtf.py [--config configs/default.toml] [--out bench/learner_rtf.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from streamssl import config
from streamssl.evaluation.benchmark import speech_windows
from streamssl.learning.learner import OnlineLearner


def measure(cfg, device: str, new_per_step: int, steps: int, warmup: int) -> dict:
    learner = OnlineLearner(cfg, device=device)
    windows = speech_windows(cfg, new_per_step * (warmup + steps))
    batches = [windows[i:i + new_per_step] for i in range(0, len(windows), new_per_step)]
    for b in batches[:warmup]:
        learner.update(b)
    audio, start, cpu0 = 0.0, time.perf_counter(), time.process_time()
    for b in batches[warmup:]:
        audio += learner.update(b).audio_seconds
    wall = time.perf_counter() - start
    # CPU seconds of this process over its torch threads: what the wall time would be on an
    # otherwise idle machine (shared CI boxes are rarely idle; wall time alone then lies).
    cpu_wall = (time.process_time() - cpu0) / torch.get_num_threads()
    return {
        "new_windows_per_step": new_per_step,
        "batch_size": new_per_step + min(cfg.learner.replay_per_step, len(learner.replay)),
        "steps": steps,
        "step_ms": 1000 * wall / steps,
        "audio_s_per_wall_s": audio / wall,
        "audio_s_per_cpu_wall_s": audio / cpu_wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/default.toml")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--batches", default="1,8,32", help="new windows per update, comma-separated")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--out", default="bench/learner_rtf.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config.load(args.config, args.overrides)
    params = sum(x.numel() for x in OnlineLearner(cfg, device=args.device).parameters())
    rows = [measure(cfg, args.device, int(n), args.steps, args.warmup) for n in args.batches.split(",")]
    print(f"{args.config}: {params / 1e6:.2f} M trainable parameters, window {cfg.capture.window_ms} ms, "
          f"replay {cfg.learner.replay_per_step}/step, torch threads {torch.get_num_threads()}, "
          f"load avg {os.getloadavg()[0]:.1f}")
    print(f"{'new/step':>8} {'batch':>6} {'step ms':>9} {'audio s / wall s':>17} {'audio s / (cpu s / threads)':>28}")
    for r in rows:
        print(f"{r['new_windows_per_step']:>8} {r['batch_size']:>6} {r['step_ms']:>9.1f} "
              f"{r['audio_s_per_wall_s']:>17.2f} {r['audio_s_per_cpu_wall_s']:>28.2f}")
    with open(args.out, "w") as f:
        json.dump({
            "config": args.config, "overrides": args.overrides, "device": args.device, "parameters": params,
            "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__, "rows": rows,
        }, f, indent=2)


if __name__ == "__main__":
    main()
