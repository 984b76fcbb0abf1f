"""One rank of a learner group, for tests/test_distributed.py: run under torchrun (or alone, as
the one-rank reference). Steps an ``OnlineLearner`` on generated windows and writes what
the test compares to ``OUT/rank-R.pt`` (weights, MoCo queue, normaliser, losses).

    torchrun --nproc-per-node 2 tests/group_worker.py --mode identical --out DIR
    torchrun --nproc-per-node 2 tests/group_worker.py --mode equivalence --out DIR
    python tests/group_worker.py --mode equivalence --out DIR      # one rank, both ranks' windows
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from streamssl import config
from streamssl.learning import distributed
from streamssl.learning.learner import OnlineLearner
from streamssl.wire import AudioWindow

SMALL = Path(__file__).parent / "configs" / "small.toml"
SR = 16000
B = 3  # windows per rank per step
STEPS = 4


def windows(rank: int, step: int, n: int) -> list[AudioWindow]:
    """``n`` 500 ms windows of rank ``rank``'s streams at ``step``: tones in noise, no pauses
    (every MoCo pair is valid, so per-rank means weigh like the one-rank mean)."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(1000 * rank + 10 * step + i)
        t = np.arange(SR // 2) / SR
        x = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + rng.normal(0, 0.05, t.size)
        out.append(AudioWindow(f"rank{rank}-stream{i}", step, 10**9 * (step + 1), SR,
                               x.astype(np.float32)[:, None], session=1))
    return out


def deterministic_views(learner: OnlineLearner) -> None:
    """No augmentation: what two ranks and one rank compute must not depend on random draws
    whose shape differs between a batch of B and one of 2B (the reduction is what is tested)."""
    core = learner.core
    core.views.view = lambda audio, g: core.normaliser(core.logmel(audio))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["identical", "equivalence"], required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    overrides = ["learner.replay_per_step=2"]
    if args.mode == "equivalence":  # CPC's negatives and replay are random draws per rank, the
        # decorrelation term's covariance a statistic of the rank's own batch: left out
        overrides = ["learner.replay_per_step=0", "objectives.cpc_weight=0", "objectives.decorrelation_weight=0",
                     "objectives.moco_crop_fraction=1.0", "objectives.moco_positive=crop"]
    cfg = config.load(SMALL, overrides)
    torch.set_num_threads(1)
    learner = OnlineLearner(cfg)
    group = None
    if distributed.launched():
        group = distributed.Group.from_environment(torch.device("cpu"))
        learner.join_group(group)
    rank = group.rank if group else 0
    world = group.world if group else 1
    if args.mode == "equivalence":
        deterministic_views(learner)
    losses = []
    for step in range(STEPS):
        if group is not None:
            # identical: rank 1 has nothing at all at step 0 and no new windows at step 2 (replay only)
            n = 0 if (args.mode == "identical" and rank == 1 and step in (0, 2)) else B
            batch = windows(rank, step, n)
            tick = group.tick(len(batch), False)
            if tick.new == 0:
                continue
        else:  # one rank with every rank's windows, in rank order
            batch = [w for r in range(2) for w in windows(r, step, B)]
        stats = learner.update(batch)
        losses.append(stats.losses)
    core = learner.core
    state = {
        "params": torch.cat([q.detach().reshape(-1) for q in core.parameters()]),
        "queue": core.moco.queue.clone(), "queue_stream": core.moco.queue_stream.clone(),
        "queue_valid": core.moco.queue_valid.clone(), "key_params": torch.cat(
            [q.reshape(-1) for q in core.moco.key_backbone.parameters()]),
        "norm_mean": core.normaliser.mean.clone(), "norm_var": core.normaliser.var.clone(),
        "step": torch.tensor(learner.step), "world": torch.tensor(world),
        "comm_s": torch.tensor(group.comm_s if group else 0.0),
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    torch.save(state, Path(args.out) / f"rank-{rank}.pt")
    if group is not None:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
