"""Where speaker and word sit in the backbone: the readout's pooling applied to each layer.

Trains a fresh ``OnlineLearner`` as ``bench/quality_ablation.py`` does (one update per
500 ms window of the embedded speech stream), then pools each encoder layer's output,
z (the last encoder layer) and c with the readout's own energy-gated mean and std, for
the trained network and its random-init twin, and probes each part and some unions on
the same transfer splits. It answers whether training added speaker anywhere that the
published readout (z and c) hides, which a single readout row cannot. Prints a table and
writes JSON; asserts nothing.

    .venv/bin/python bench/layer_probe.py --config configs/default.toml --windows 800 --out bench/layer_probe.json
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from quality_ablation import probe_set, scores, train  # noqa: E402

from streamssl import config  # noqa: E402
from streamssl.evaluation.probe import random_init_like  # noqa: E402
from streamssl.learning.readout import energy_weights, stats_pool  # noqa: E402

UNIONS = {"z and c (the readout)": ("z", "c"), "every layer and c": None}


@torch.no_grad()
def pooled_parts(learner, audio) -> dict[str, np.ndarray]:
    """Per clip, from a fresh state: energy-gated mean and std of every encoder layer's output and of c."""
    core = learner.core
    blocks = core.backbone.encoder.blocks
    names = [f"encoder layer {i + 1}" for i in range(len(blocks) - 1)] + ["z", "c"]
    rows = {name: [] for name in names}
    for x in audio:
        mel = core.logmel(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None])
        w = energy_weights(mel)
        h = core.normaliser(mel).transpose(1, 2)
        outs = []
        for block in blocks:
            h, _ = block(h, None)
            outs.append(h.transpose(1, 2))
        c, _ = core.backbone.context(outs[-1], None)
        for name, frames in zip(names, [*outs, c]):
            rows[name].append(stats_pool(frames.float(), w)[0].numpy())
    return {name: np.stack(v) for name, v in rows.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tests/configs/small.toml")
    p.add_argument("--windows", type=int, default=800, help="500 ms windows of streamed speech to learn from")
    p.add_argument("--seeds", type=int, default=5, help="probe split seeds")
    p.add_argument("--stream-seed", type=int, default=0)
    p.add_argument("--out", default="bench/layer_probe.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    seeds = range(args.seeds)
    audio, speaker, word = probe_set()
    trained = train(config.load(args.config), args.windows, args.stream_seed)
    results = {}
    print(f"{'network':8s} {'part':24s} {'speaker':>12s} {'word':>12s}")
    for network, learner in (("trained", trained), ("random", random_init_like(trained))):
        parts = pooled_parts(learner, audio)
        for name, members in [*((n, (n,)) for n in parts), *UNIONS.items()]:
            x = np.concatenate([parts[m] for m in (members or parts)], axis=1)
            r = {"speaker": scores(x, speaker, word, seeds), "word": scores(x, word, speaker, seeds)}
            results[f"{network}/{name}"] = r
            print(f"{network:8s} {name:24s} {r['speaker'][0]:.3f}±{r['speaker'][1]:.3f} "
                  f"{r['word'][0]:.3f}±{r['word'][1]:.3f}", flush=True)
    with open(args.out, "w") as f:
        json.dump({"config": args.config, "windows": args.windows, "stream_seed": args.stream_seed,
                   "seeds": list(seeds), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
