"""How the probe moves as one learner keeps streaming: speaker, word and rank at milestones.

One fresh ``OnlineLearner`` learns from the embedded speech stream (``SpeechSource(seed)``)
one update per 500 ms window, as ``bench/quality_ablation.py`` trains, but without
stopping: at each milestone the readout is probed on the same channel-varied set and
transfer splits. It answers what a 10-minute evaluation cannot: whether the trained row
keeps rising (a run of weeks would then end better than the evaluation says), levels off,
or falls. ``--replay-steps K`` adds K replay-only steps (``OnlineLearner.replay_update``)
after each window's update, what the learner daemon's idle time adds (``learner.idle_replay``,
taken there only while no window waits): more steps on the same audio, set against more
audio. Random init (``--random-inits`` networks, pooled as in ``bench/quality_ablation.py``)
and pooled log-mel are probed once. Prints a table and writes JSON;
asserts nothing.

    .venv/bin/python bench/learning_curve.py --config configs/default.toml --at 200,400,800,1600,2400
    .venv/bin/python bench/learning_curve.py --config configs/default.toml --at 800 --replay-steps 1
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from quality_ablation import add_random_inits, probe, probe_random_inits, probe_set  # noqa: E402

from streamssl import config  # noqa: E402
from streamssl.evaluation.probe import learner_embedder, pooled_logmel  # noqa: E402
from streamssl.evaluation.reference import recorded_speech  # noqa: E402
from streamssl.learning.learner import OnlineLearner  # noqa: E402
from streamssl.wire import AudioWindow, to_pcm16, window_frames  # noqa: E402

WINDOW_MS = 500


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tests/configs/small.toml")
    p.add_argument("--at", default="200,400,800,1600,2400", help="windows learned at each probe, ascending")
    p.add_argument("--seeds", type=int, default=5, help="probe split seeds")
    p.add_argument("--stream-seed", type=int, default=0)
    p.add_argument("--replay-steps", type=float, default=0.0, help="replay-only steps after each window's update")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    add_random_inits(p)
    p.add_argument("--out", default="bench/learning_curve.json")
    args = p.parse_args()
    milestones = sorted({int(m) for m in args.at.split(",")})
    torch.set_num_threads(1)
    seeds = range(args.seeds)
    audio, speaker, word = probe_set()
    cfg = config.load(args.config, args.overrides)
    learner = OnlineLearner(cfg, device="cpu")
    rate = learner.sample_rate
    n = window_frames(rate, WINDOW_MS)
    stream = recorded_speech(args.stream_seed, milestones[-1] * WINDOW_MS / 1000, rate)

    rows, learned, owed, started = {}, 0, 0.0, time.perf_counter()
    print(f"{'windows':>8s} {'row':8s} {'speaker':>12s} {'word':>12s} {'eff. rank':>9s} {'steps':>6s} {'train s':>8s}")

    def report(key: str, r: dict) -> None:
        rows[key] = r
        windows, row = key.split("/")
        print(f"{windows:>8s} {row:8s} {r['speaker'][0]:.3f}±{r['speaker'][1]:.3f} {r['word'][0]:.3f}±{r['word'][1]:.3f}"
              f" {r['effective_rank']:9.1f} {r.get('steps', '-'):>6} {r.get('train_s', float('nan')):8.0f}", flush=True)

    for milestone in milestones:
        for seq in range(learned, milestone):
            pcm = to_pcm16(stream[seq * n:(seq + 1) * n, None])
            learner.update([AudioWindow("speech", seq, (seq + 1) * WINDOW_MS * 1_000_000, rate, pcm)])
            owed += args.replay_steps
            while owed >= 1.0:
                owed -= 1.0
                learner.replay_update()  # None (no step) while the buffer is smaller than a batch
        learned = milestone
        r = probe(learner_embedder(learner)(audio), speaker, word, seeds)
        r["train_s"] = time.perf_counter() - started
        r["steps"] = learner.step
        report(f"{milestone}/trained", r)
        if milestone == milestones[-1]:  # baselines once, as quality_ablation takes them: after all the learning
            report("-/random", probe_random_inits(learner, audio, speaker, word, seeds, args.random_inits))
            report("-/logmel", probe(pooled_logmel(cfg, audio), speaker, word, seeds))
    with open(args.out, "w") as f:
        json.dump({"config": args.config, "overrides": args.overrides, "stream_seed": args.stream_seed,
                   "replay_steps": args.replay_steps,
                   "seeds": list(seeds), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
