"""SIGKILL the learner many times at random moments; does it always come back whole?

The long version of tests/test_sigkill.py: a real ``streamssl learn`` (small test model)
checkpointing every ``--interval-s`` (so many kills land during a write) fed by an
unpaced ``streamssl capture --source synth``; at a random moment it is killed with
SIGKILL, the newest loadable checkpoint is read as the restart will read it, and the
learner is restarted on the same endpoints and directory. Per kill it records the step
at the kill, the step resumed, and the seconds between the newest checkpoint and the
kill. Prints a summary and writes JSON; asserts nothing.

    .venv/bin/python bench/sigkill_many.py --kills 30 --out bench/sigkill_many.json
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from streamssl.learning import checkpoint
from streamssl.procs import free_port, metric, scrape, spawn, terminate

SMALL = "tests/configs/small.toml"


def wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(what)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=30)
    p.add_argument("--interval-s", type=float, default=0.5, help="learner.checkpoint_interval_s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/sigkill_many.json")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="streamssl-kills-"))
    ckpt = work / "checkpoints"
    audio, emb, port = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}", free_port()

    def start() -> subprocess.Popen:
        proc = spawn(["learn", "--config", SMALL, "--audio-bind", audio, "--embeddings-bind", emb, "--metrics-port",
                      str(port), "--checkpoint-dir", str(ckpt), "--device", "cpu",
                      "--set", f"learner.checkpoint_interval_s={args.interval_s}", "--set", "learner.checkpoint_keep=2"],
                     work / "learner.log")
        wait_for(lambda: scrape(port), 90, "learner /metrics")
        return proc

    def step() -> float:
        return metric(scrape(port), "streamssl_learner_model_step")

    learner = start()
    capture = spawn(["capture", "--source", "synth", "--stream-id", "kills", "--connect", audio, "--window-ms", "250",
                     "--no-realtime", "--metrics-port", "0"], work / "capture.log")
    record = []
    try:
        for kill in range(args.kills):
            floor = record[-1]["resumed"] + 3 if record else 3
            wait_for(lambda: step() >= floor, 120, f"kill {kill}: learning")
            time.sleep(float(rng.uniform(0.05, 1.0)))
            at_kill = step()
            learner.send_signal(signal.SIGKILL)
            killed_at = time.time()
            learner.wait(timeout=30)
            state = checkpoint.load_latest(ckpt)
            saved = None if state is None else int(state["learner"]["core"]["step"])
            learner = start()
            resumed = step()
            record.append({
                "kill": kill, "step_at_kill": at_kill, "checkpoint_step": saved, "resumed": resumed,
                "s_since_checkpoint": None if state is None else killed_at - state["saved_at"],
            })
            r = record[-1]
            print(f"kill {kill:3d}: step {at_kill:5.0f} -> resumed {resumed:5.0f} (newest checkpoint {saved}, "
                  f"{r['s_since_checkpoint'] if r['s_since_checkpoint'] is not None else float('nan'):.2f} s old)",
                  flush=True)
    finally:
        terminate(capture, timeout=10)
        terminate(learner, timeout=30)
    loadable = sum(r["checkpoint_step"] is not None for r in record)
    resumed_newest = sum(r["resumed"] == r["checkpoint_step"] for r in record)
    lost = [r["step_at_kill"] - r["resumed"] for r in record]
    ages = [r["s_since_checkpoint"] for r in record if r["s_since_checkpoint"] is not None]
    backwards = sum(b["resumed"] < a["resumed"] for a, b in zip(record, record[1:]))
    summary = {
        "kills": len(record), "loadable_checkpoint": loadable, "resumed_from_newest": resumed_newest,
        "steps_lost_max": max(lost) if lost else None, "steps_lost_median": float(np.median(lost)) if lost else None,
        "checkpoint_age_s_max": max(ages) if ages else None, "step_went_back": backwards,
        "interval_s": args.interval_s,
    }
    print(json.dumps(summary))
    Path(args.out).write_text(json.dumps({"summary": summary, "kills": record}, indent=1) + "\n")
    return 0 if record else 1


if __name__ == "__main__":
    sys.exit(main())
