"""Scaling of a learner group: audio seconds learned per wall second with 1 and N ranks.

Each rank runs the learner's own step (``OnlineLearner.update``, the lockstep tick, the
normaliser reduction, the gradient all-reduce and the MoCo key all-gather) on
``--batch`` new 500 ms windows per step plus its replay, at ``--threads`` torch threads,
with no sockets (the serving side is measured by ``streamssl bench``). One rank is the
plain single-process learner (no group, no collectives); N ranks run under
``torchrun --standalone`` with gloo (NCCL on GPUs). The table gives per configuration:
steps per second, audio seconds learned per wall second, scaling efficiency
(N-rank throughput / (N x 1-rank throughput)), time in collectives per step and gradient
bytes all-reduced per step.

    .venv/bin/python bench/scaling.py --ranks 1 2 --steps 40 --out bench/scaling.json

Asserts nothing: the figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SR = 16000


def worker(args: argparse.Namespace) -> int:
    import torch

    from streamssl import config
    from streamssl.learning import distributed
    from streamssl.learning.learner import OnlineLearner
    from streamssl.wire import AudioWindow

    torch.set_num_threads(args.threads)
    cfg = config.load(args.config, [f"learner.threads={args.threads}"])
    learner = OnlineLearner(cfg, device=args.device)
    group = None
    if distributed.launched():
        group = distributed.Group.from_environment(learner.device)
        learner.join_group(group)
    rank = group.rank if group else 0
    rng = np.random.default_rng(rank)
    t = np.arange(SR // 2) / SR

    def batch(step: int) -> list:
        return [AudioWindow(f"r{rank}-s{i}", step, 10**9 * (step + 1), SR,
                            (0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t)
                             + rng.normal(0, 0.05, t.size)).astype(np.float32)[:, None], session=1)
                for i in range(args.batch)]

    def step(i: int) -> None:
        windows = batch(i)
        if group is not None:
            group.tick(len(windows), False)
        learner.update(windows)

    for i in range(args.warmup):
        step(i)
    comm0, bytes0 = (group.comm_s, group.bytes_reduced) if group else (0.0, 0)
    started = time.perf_counter()
    for i in range(args.steps):
        step(args.warmup + i)
    wall = time.perf_counter() - started
    if rank == 0:
        world = group.world if group else 1
        result = {
            "ranks": world, "threads": args.threads, "batch_per_rank": args.batch, "steps": args.steps,
            "wall_s": wall, "steps_per_s": args.steps / wall,
            "audio_s_per_s": args.steps * args.batch * 0.5 * world / wall,
            "comm_s_per_step": ((group.comm_s - comm0) / args.steps) if group else 0.0,
            "bytes_all_reduced_per_step": ((group.bytes_reduced - bytes0) / args.steps) if group else 0,
            "parameters": sum(p.numel() for p in learner.parameters()),
            "backend": torch.distributed.get_backend() if group else "none", "device": str(learner.device),
        }
        Path(args.result).write_text(json.dumps(result))
    if group is not None:
        torch.distributed.destroy_process_group()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8, help="new windows per rank per step")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--config", default=str(REPO / "configs" / "default.toml"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="bench/scaling.json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    rows = []
    for n in args.ranks:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            result = f.name
        own = ["--worker", "--result", result, "--threads", str(args.threads), "--batch", str(args.batch),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--config", args.config, "--device", args.device]
        launch = [sys.executable, __file__] if n == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), __file__]
        subprocess.run([*launch, *own], check=True, env=env, cwd=REPO)
        rows.append(json.loads(Path(result).read_text()))
        Path(result).unlink()
    base = next((r for r in rows if r["ranks"] == 1), None)
    for r in rows:
        r["efficiency"] = r["audio_s_per_s"] / (r["ranks"] * base["audio_s_per_s"]) if base else None
    print(f"\n{'ranks':>5s} {'threads':>7s} {'steps/s':>8s} {'audio s/s':>9s} {'efficiency':>10s}"
          f" {'comm ms/step':>12s} {'MB reduced/step':>15s}")
    for r in rows:
        eff = f"{r['efficiency']:.2f}" if r["efficiency"] is not None else "-"
        print(f"{r['ranks']:5d} {r['threads']:7d} {r['steps_per_s']:8.2f} {r['audio_s_per_s']:9.2f} {eff:>10s}"
              f" {1000 * r['comm_s_per_step']:12.1f} {r['bytes_all_reduced_per_step'] / 1e6:15.2f}")
    Path(args.out).write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
