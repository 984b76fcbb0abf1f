"""Sound-event discovery on a generated scene: online cluster ids against the known segment kinds.

A ``scenes:NOVEL_AFTER_S`` stream (``streamssl.capture.sources.scenes``: speech, tones,
coloured noise, music; the never-heard ``chirps`` from ``--novel-after-min`` on) goes
window by window through what a live deployment runs: the learner embeds each window
with its current weights and then takes its step on it (``OnlineLearner.process``, the
daemon's order), and ``streamssl.events.EventClusterer`` clusters the embedding as a
subscriber would. The same clusterer, in the same run, also clusters each window's pooled
log-mel (mean and std over the window's frames: the baseline to beat) and the embeddings
of the untrained network. The untrained network reads its input through the learner's
running normaliser, as the random-init rows of ``streamssl eval`` do (the normaliser is
not learned by gradient), so the row measures what training adds, not what input
scaling takes away.

Reported, per feature set:
- ARI (adjusted Rand index) of the online cluster ids against the segment kinds, over the
  windows after ``--skip-min`` (the clusterer is still meeting the scene before that)
  and before the novel kind arrives;
- novelty: the delay from the first novel segment's start to the first novel flag of a
  window inside it, and the novelty flags raised between the warm-up and that start
  (false alarms), per 5 minutes;
- the ARI of river's ``DBSTREAM`` on the same space and radius (the library
  alternative to the clusterer's own leader clustering).

    .venv/bin/python bench/events.py --minutes 10 --novel-after-min 8 --out bench/events.json

``--frozen-after-min M`` asks what the online row loses to the learner's drift: the
learner steps on the first M minutes only, then embeds the whole scene with those weights
held still, and the untrained row reads the same frozen normaliser.

Asserts nothing: the table goes to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamssl import config  # noqa: E402
from streamssl.capture.sources.scenes import NOVEL_KIND, labels_for_windows, render, scene_plan  # noqa: E402
from streamssl.events.clusterer import EventClusterer  # noqa: E402
from streamssl.learning.learner import OnlineLearner  # noqa: E402
from streamssl.wire import AudioWindow, to_pcm16  # noqa: E402


def scene_audio(seconds: float, seed: int, novel_after_s: float | None, rate: int) -> tuple[np.ndarray, float | None]:
    """The scene's first ``seconds`` and the start of its first novel segment."""
    parts, novel_start = [], None
    for seg in itertools.takewhile(lambda s: s.start_s < seconds, scene_plan(seed, novel_after_s)):
        parts.append(render(seg, rate))
        if seg.kind == NOVEL_KIND and novel_start is None:
            novel_start = seg.start_s
    return np.concatenate(parts)[: int(seconds * rate)], novel_start


def windows_of(audio: np.ndarray, rate: int, window_s: float, stream_id: str = "scene") -> list[AudioWindow]:
    n = int(round(window_s * rate))
    return [AudioWindow(stream_id, i, int((i + 1) * window_s * 1e9), rate, to_pcm16(audio[i * n:(i + 1) * n, None]))
            for i in range(len(audio) // n)]


def learn_then_freeze(cfg: config.Config, learner: OnlineLearner, windows: list[AudioWindow], t0: float) -> OnlineLearner:
    """Step ``learner`` on ``windows`` in order, then return a fresh learner (no stream state yet)
    holding its weights and statistics, which ``--frozen-after-min`` only ever embeds with.
    ``update`` alone: ``process`` would also embed each window, for nothing (the step reads
    no embedding, so the weights are the same)."""
    for i, w in enumerate(windows):
        learner.update([w])
        if (i + 1) % 120 == 0:
            print(f"  learning {i + 1}/{len(windows)} windows, {time.perf_counter() - t0:.0f} s", flush=True)
    frozen = OnlineLearner(cfg)
    frozen.core.load_state_dict(learner.core.state_dict())
    return frozen


def cluster(features: np.ndarray, cfg: config.EventsConfig, window_s: float, steps: list[int] | None = None):
    """Online assignments of each row, in order, as a live subscriber would make them."""
    c = EventClusterer(cfg, features.shape[1])
    out = []
    for i, f in enumerate(features):
        out.append(c.observe("scene", f, steps[i] if steps else 0))
    return out, c


def river_dbstream_ari(features: np.ndarray, cfg: config.EventsConfig, labels: list[str], window_s: float,
                       skip_s: float, end_s: float) -> float:
    """ARI of river's DBSTREAM on the same space the EventClusterer uses (its own macro-cluster
    labels, renumbered as DBSTREAM re-clusters): the library alternative, measured."""
    from river.cluster import DBSTREAM

    from streamssl.events.clusterer import Space

    space, db, ids = Space(cfg, features.shape[1]), DBSTREAM(clustering_threshold=cfg.radius,
                                                            fading_factor=cfg.fading, minimum_weight=cfg.min_weight), []
    for f in features:
        y = space.add(np.asarray(f, dtype=np.float64))
        if y is None:
            ids.append(-1)
            continue
        x = dict(enumerate(y.tolist()))
        db.learn_one(x)
        ids.append(db.predict_one(x))
    t = (np.arange(len(labels)) + 0.5) * window_s
    judged = (t >= skip_s) & (t < end_s)
    return float(adjusted_rand_score(np.array(labels)[judged], np.array(ids)[judged]))


def score(assign, labels: list[str], window_s: float, skip_s: float, novel_start: float | None, warmup_s: float) -> dict:
    ids = np.array([a.cluster for a in assign])
    t = (np.arange(len(labels)) + 0.5) * window_s
    end = novel_start if novel_start is not None else t[-1] + 1
    judged = (t >= skip_s) & (t < end)
    ari = float(adjusted_rand_score(np.array(labels)[judged], ids[judged]))
    flags = np.array([a.novel for a in assign])
    before = flags & (t >= warmup_s) & (t < end)
    calm_minutes = max(1e-9, (end - warmup_s) / 60)
    delay = None
    if novel_start is not None:
        inside = np.nonzero(flags & (t >= novel_start) & (np.array(labels) == NOVEL_KIND))[0]
        # the window's end is when a live system could flag it: (i + 1) * window_s
        delay = float((inside[0] + 1) * window_s - novel_start) if inside.size else None
    return {
        "ari": ari,
        "clusters_final": int(len(set(ids[judged]) - {-1})),
        "false_novelty": int(before.sum()),
        "false_novelty_per_5min": float(before.sum() / calm_minutes * 5),
        "novel_delay_s": delay,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/default.toml")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--novel-after-min", type=float, default=8.0)
    p.add_argument("--skip-min", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    p.add_argument("--out", default="bench/events.json")
    p.add_argument("--dump", help="also save the features, steps and labels here (.npz) for offline study")
    p.add_argument("--frozen-after-min", type=float, metavar="M",
                   help="learn from the first M minutes only, then embed the whole scene with those weights and "
                        "input statistics held still (the untrained row gets that normaliser): the online row "
                        "without drift")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = config.load(args.config, args.overrides)
    rate, window_s = cfg.features.sample_rate, cfg.capture.window_ms / 1000
    started = time.perf_counter()
    audio, novel_start = scene_audio(args.minutes * 60, args.seed, args.novel_after_min * 60, rate)
    windows = windows_of(audio, rate, window_s)
    labels = labels_for_windows(len(windows), window_s, args.seed, args.novel_after_min * 60)
    print(f"scene: {len(windows)} windows of {window_s} s, novel kind from {novel_start} s "
          f"(rendered in {time.perf_counter() - started:.0f} s)", flush=True)

    learner = OnlineLearner(cfg)
    untrained = OnlineLearner(cfg)
    t0 = time.perf_counter()
    frozen = args.frozen_after_min is not None
    if frozen:
        learner = learn_then_freeze(cfg, learner, windows[: int(round(args.frozen_after_min * 60 / window_s))], t0)
        untrained.core.normaliser.load_state_dict(learner.core.normaliser.state_dict())
    trained, steps, random_init, logmel = [], [], [], []
    for i, w in enumerate(windows):
        if frozen:
            frames = learner.embed([w])
        else:
            untrained.core.normaliser.load_state_dict(learner.core.normaliser.state_dict())  # as the learner embeds w
            frames, _ = learner.process([w])
        trained.append(frames[0].embedding)
        steps.append(frames[0].model_step)
        random_init.append(untrained.embed([w])[0].embedding)
        x = torch.from_numpy(w.mono_float())
        mel = learner.core.logmel(x[None])[0]  # (T, F) of this window alone
        logmel.append(torch.cat([mel.mean(0), mel.std(0)]).numpy())
        if (i + 1) % 120 == 0:
            print(f"  {i + 1}/{len(windows)} windows, step {learner.step}, {time.perf_counter() - t0:.0f} s", flush=True)

    if args.dump:
        np.savez(args.dump, trained=np.stack(trained), steps=np.array(steps), random_init=np.stack(random_init),
                 logmel=np.stack(logmel), labels=np.array(labels), novel_start=novel_start or -1.0, window_s=window_s)
    rows = {}
    trained_name = f"trained, frozen at {args.frozen_after_min:g} min" if frozen else "trained online"
    for name, feats, st in ((trained_name, trained, steps), ("untrained network", random_init, None),
                            ("pooled log-mel", logmel, None)):
        cl_started = time.perf_counter()
        assign, c = cluster(np.stack(feats), cfg.events, window_s, st)
        rows[name] = score(assign, labels, window_s, args.skip_min * 60, novel_start, cfg.events.warmup_windows * window_s)
        rows[name]["clusterer_ms_per_window"] = 1e3 * (time.perf_counter() - cl_started) / len(feats)
        rows[name]["clusters_alive"] = c.clusters_alive
        rows[name]["ari_river_dbstream"] = river_dbstream_ari(
            np.stack(feats), cfg.events, labels, window_s, args.skip_min * 60,
            novel_start if novel_start is not None else float("inf"))

    print(f"\n{'features':27s} {'ARI':>6s} {'clusters':>8s} {'false novelty':>13s} {'per 5 min':>9s} "
          f"{'novel delay s':>13s} {'ms/window':>9s} {'ARI DBSTREAM':>12s}")
    for name, r in rows.items():
        delay = "missed" if r["novel_delay_s"] is None else f"{r['novel_delay_s']:.1f}"
        print(f"{name:27s} {r['ari']:6.3f} {r['clusters_final']:8d} {r['false_novelty']:13d} "
              f"{r['false_novelty_per_5min']:9.2f} {delay:>13s} {r['clusterer_ms_per_window']:9.2f} "
              f"{r['ari_river_dbstream']:12.3f}")
    result = {
        "minutes": args.minutes, "seed": args.seed, "novel_start_s": novel_start, "skip_min": args.skip_min,
        "steps": learner.step, "frozen_after_min": args.frozen_after_min, "overrides": args.overrides,
        "events": vars(cfg.events), "rows": rows,
        "wall_s": time.perf_counter() - started,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
