"""Scaling of a learner group: audio seconds learned per wall second with 1 and N ranks.

Each rank runs the learner's own step (``OnlineLearner.update``, the lockstep tick, the
normaliser reduction, the gradient all-reduce and the MoCo key all-gather) on
``--batch`` new 500 ms windows per step plus its replay, at ``--threads`` torch threads,
with no sockets (the serving side is measured by ``streamssl bench``). One rank is the
plain single-process learner (no group, no collectives); N ranks run under
``torchrun --standalone`` with gloo (NCCL on GPUs). The table gives per configuration:
steps per second, audio seconds learned per wall second, scaling efficiency
(N-rank throughput / (N x 1-rank throughput)), time in collectives per step (waiting for
the slower rank included) and gradient bytes all-reduced per step. A third row per N,
"N alone", runs N single-process learners side by side with no group: the efficiency the
machine itself allows N processes (shared caches, memory bandwidth, a noisy neighbour),
so the group's own cost is the gap between the two.

    .venv/bin/python bench/scaling.py --ranks 1 2 --batch 8 32 --steps 30 --out bench/scaling.json

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
                for i in range(args.batch[0])]

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
            "ranks": world, "threads": args.threads, "batch_per_rank": args.batch[0], "steps": args.steps,
            "wall_s": wall, "steps_per_s": args.steps / wall,
            "audio_s_per_s": args.steps * args.batch[0] * 0.5 * world / wall,
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
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32], help="new windows per rank per step (one table row set each)")
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

    def run(n: int, batch: int, alone: bool = False) -> dict:
        results = []
        own = ["--worker", "--threads", str(args.threads), "--batch", str(batch), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--config", args.config, "--device", args.device]
        procs = []
        for i in range(n if alone else 1):
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                results.append(f.name)
            launch = [sys.executable, __file__] if n == 1 or alone else \
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), __file__]
            procs.append(subprocess.Popen([*launch, *own, "--result", results[-1]], env=env, cwd=REPO))
        if any(p.wait() != 0 for p in procs):
            raise SystemExit("a worker failed")
        got = [json.loads(Path(r).read_text()) for r in results]
        for r in results:
            Path(r).unlink()
        if not alone:
            return got[0] | {"config": f"{n} rank" + ("s" if n > 1 else "")}
        return got[0] | {"config": f"{n} alone", "ranks": n, "audio_s_per_s": sum(g["audio_s_per_s"] for g in got),
                         "steps_per_s": sum(g["steps_per_s"] for g in got) / n}

    for batch in args.batch:
        base = run(1, batch)
        rows.append(base)
        for n in [n for n in args.ranks if n > 1]:
            rows += [run(n, batch), run(n, batch, alone=True)]
        for r in rows:
            if r["batch_per_rank"] == batch:
                r["efficiency"] = r["audio_s_per_s"] / (r["ranks"] * base["audio_s_per_s"])
    print(f"\n{'batch':>5s} {'config':>9s} {'steps/s':>8s} {'audio s/s':>9s} {'efficiency':>10s}"
          f" {'comm ms/step':>12s} {'MB reduced/step':>15s}")
    for r in rows:
        print(f"{r['batch_per_rank']:5d} {r['config']:>9s} {r['steps_per_s']:8.2f} {r['audio_s_per_s']:9.2f}"
              f" {r['efficiency']:10.2f} {1000 * r['comm_s_per_step']:12.1f} {r['bytes_all_reduced_per_step'] / 1e6:15.2f}")
    Path(args.out).write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
