"""The whole product on loopback in one command (``streamssl demo``).

Starts a learner and a capture on the generated-speech source as real separate
processes (free ports, so it never collides with a running deployment), subscribes to
the embeddings in this process, shows live progress read from the daemons' /metrics,
and at the end (or on Ctrl-C) stops them cleanly, prints a summary, and leaves a
checkpoint, logs and a loss plot in the output folder it names.

With ``--source scenes[:NOVEL_AFTER_S]`` (segments of known kinds of sound) it also runs
``streamssl events`` on the embeddings and the summary shows the clusters it found
against the kinds the scene played (``events_summary``).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from streamssl import procs
from streamssl.config import Config
from streamssl.serving.subscriber import subscribe


def default_out_dir() -> Path:
    """``runs/demo-YYYYmmdd-HHMMSS``: a new folder per run, so runs never mix checkpoints."""
    return Path(f"runs/demo-{datetime.now():%Y%m%d-%H%M%S}")


class EmbeddingCounter(threading.Thread):
    """Subscribes in the background and records each embedding's end-to-end latency."""

    def __init__(self, endpoint: str):
        super().__init__(daemon=True)
        self.sub = subscribe(endpoint, timeout=0.5)
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()

    def run(self) -> None:
        with self.sub:
            while not self._stop.is_set():
                try:
                    frame = next(self.sub)
                except TimeoutError:
                    continue  # quiet learner: keep listening (same socket) until told to stop
                self.latencies_ms.append((time.time_ns() - frame.capture_ns) / 1e6)

    def stop(self) -> None:
        self._stop.set()


class Progress:
    """What the live display and the summary show, read from both daemons' /metrics."""

    def __init__(self, learner_port: int, capture_port: int):
        self.ports = learner_port, capture_port
        self.learner: procs.Samples = {}
        self.capture: procs.Samples = {}
        self.first_losses: dict[str, float] = {}
        self.capture_final: dict | None = None  # the capture's exit counts, once it has stopped

    def read_capture_summary(self, path: Path) -> None:
        """Take the capture's exit counts (``capture --summary-json``): its last scrape came before
        the windows it sent while stopping, so it would show fewer sent than the learner received."""
        try:
            self.capture_final = json.loads(path.read_text())
        except (OSError, ValueError):
            self.capture_final = None  # a capture that died leaves none: keep the last scrape

    def refresh(self) -> None:
        for attr, port in zip(("learner", "capture"), self.ports):
            try:
                setattr(self, attr, procs.scrape(port))
            except OSError:
                pass  # not up yet, or already gone: keep the last reading
        if self.value("streamssl_learner_updates_total") > 0:
            queue_full = self.value("streamssl_learner_moco_queue_fill_ratio") >= 1.0
            for name in self.objectives():
                # MoCo's loss is ~0 while its queue holds few negatives: compare from a full queue
                if name != "moco" or queue_full:
                    self.first_losses.setdefault(name, self.loss(name))

    def objectives(self) -> list[str]:
        """The objectives the learner reports a loss for (its ``objective`` labels), ``total`` last."""
        names = {dict(labels).get("objective") for n, labels in self.learner if n == "streamssl_learner_loss"}
        names.discard(None)
        return sorted(names - {"total"}) + (["total"] if "total" in names else [])

    def value(self, name: str, **labels: str) -> float:
        source = self.capture if name.startswith("streamssl_capture") else self.learner
        return procs.metric(source, name, **labels)

    def loss(self, name: str) -> float:
        return self.value("streamssl_learner_loss", objective=name)

    def sent_and_dropped(self) -> tuple[int, int]:
        """Windows the capture sent and dropped: its exit counts once stopped, else its /metrics."""
        if self.capture_final is not None:
            return int(self.capture_final["windows_sent"]), int(sum(self.capture_final["windows_dropped"].values()))
        return (int(self.value("streamssl_capture_windows_sent_total")),
                int(self.value("streamssl_capture_windows_dropped_total")))

    def sent_received(self) -> str:
        """``sent / received``, saying why when they differ: windows still on the way (live), or
        sent before the learner's last reading but not received by it (at the end)."""
        sent, _ = self.sent_and_dropped()
        received = int(self.value("streamssl_learner_windows_received_total"))
        if received == sent:
            return f"{sent} / {received}"
        if received < sent:
            return f"{sent} / {received} ({sent - received} in flight)"
        # Only a capture reading older than the learner's can show this; say so rather than mislead.
        return f"{sent} / {received} (capture count is older than the learner's)"

    def rows(self, elapsed: float, embeddings: int) -> list[tuple[str, str]]:
        v = self.value
        _, dropped = self.sent_and_dropped()
        rows = [
            ("elapsed", f"{elapsed:.1f} s"),
            ("audio learned", f"{v('streamssl_learner_audio_seconds_total'):.1f} s"),
            ("windows sent / received", self.sent_received()),
            ("windows dropped / shed / missing",
             f"{dropped} / {v('streamssl_learner_windows_shed_total'):.0f}"
             f" / {v('streamssl_learner_missing_windows_total'):.0f}"),
            ("model step", f"{v('streamssl_learner_model_step'):.0f}"),
            ("real-time factor", f"{v('streamssl_learner_realtime_factor'):.1f}x"),
            ("embeddings received", str(embeddings)),
        ]
        for name in self.objectives():
            if name in self.first_losses:
                label = "loss moco (from full queue)" if name == "moco" else f"loss {name}"
                rows.append((label, f"{self.first_losses[name]:.3f} -> {self.loss(name):.3f}"))
            elif name == "moco" and self.value("streamssl_learner_updates_total") > 0:
                fill = self.value("streamssl_learner_moco_queue_fill_ratio")
                rows.append((f"loss moco (queue {fill:.0%} full)", f"{self.loss(name):.3f}"))
        cka = v("streamssl_learner_probe_cka", reference="initial")
        rows.append(("probe CKA vs initial", f"{cka:.3f}" if cka == cka else "after the second probe check"))
        rows.append(("drift detections", f"{v('streamssl_learner_drift_detections_total'):.0f}"))
        return rows


def wait_until_serving(proc, port: int, timeout: float = 120.0) -> None:
    """Block until the learner answers on /metrics (it binds its sockets just before)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"learner exited with {proc.returncode}:\n{procs.log_tail(proc)}")
        try:
            procs.scrape(port)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"learner not serving after {timeout:.0f} s:\n{procs.log_tail(proc)}")


def _wait_for_last_windows(progress: Progress, patience_s: float = 10.0) -> None:
    """Let the windows the capture sent while stopping reach the learner before it stops: poll
    until its received count reaches the capture's sent count, or nothing arrives for a while."""
    last, quiet_since = -1.0, time.monotonic()
    while True:
        progress.refresh()
        sent, _ = progress.sent_and_dropped()
        received = progress.value("streamssl_learner_windows_received_total")
        if received >= sent:
            return
        if received != last:
            last, quiet_since = received, time.monotonic()
        elif time.monotonic() - quiet_since > patience_s:
            return  # the rest is lost on the way (a dead learner): the summary says how many
        time.sleep(0.1)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for k, val in rows:
        table.add_row(k, val)
    return table


def run_demo(
    cfg: Config, *, config_path: str | None = None, overrides: list[str] = (), seconds: float = 60.0,
    out: str | Path | None = None, source: str = "speech", live: bool = True, audio_seconds: float | None = None,
) -> int:
    """Run learner + capture (+ a subscriber here) for ``seconds``; 0 if a checkpoint, a plot and
    embeddings came out. ``cfg`` is the already validated config behind ``config_path`` + ``overrides``,
    which the daemons are given again.

    With ``audio_seconds`` the capture reads that much of the source as fast as the learner learns
    it (no real-time pacing, back-pressure instead of drops, every window learned) and the run ends
    when it is all learned, or after ``seconds`` of wall time, whichever comes first: how
    ``make eval`` streams an hour of audio through the real daemons in minutes."""
    if audio_seconds is not None:
        overrides = [*overrides, "learner.learn_every_window=true"]
    out = Path(out) if out else default_out_dir()
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    console = Console()
    audio_ep = f"tcp://127.0.0.1:{procs.free_port()}"
    emb_ep = f"tcp://127.0.0.1:{procs.free_port()}"
    learner_port, capture_port = procs.free_port(), procs.free_port()
    common = [*(["--config", config_path] if config_path else []), *(f"--set={o}" for o in overrides)]
    learner = procs.spawn(
        ["learn", *common, "--audio-bind", audio_ep, "--embeddings-bind", emb_ep, "--metrics-port", str(learner_port),
         "--checkpoint-dir", str(ckpt_dir)],
        out / "learner.log",
    )
    wait_until_serving(learner, learner_port)  # else windows captured during its start-up arrive seconds old
    capture_summary = out / "capture-summary.json"
    capture_summary.unlink(missing_ok=True)  # a resumed --out must not show the previous run's counts
    capture = procs.spawn(
        ["capture", *common, "--source", source, "--stream-id", cfg.capture.stream_id, "--connect", audio_ep,
         "--metrics-port", str(capture_port), "--summary-json", str(capture_summary),
         *(["--no-realtime", "--max-seconds", str(audio_seconds)] if audio_seconds is not None else [])],
        out / "capture.log",
    )
    events = None
    if source.startswith("scenes"):
        events = procs.spawn(["events", *common, emb_ep, "--out", str(out / "events.jsonl")], out / "events.log")
    counter = EmbeddingCounter(emb_ep)
    counter.start()
    progress = Progress(learner_port, capture_port)
    console.print(f"streamssl demo: learner {audio_ep} -> embeddings {emb_ep}; output in [bold]{out}[/]")
    interrupted = False
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a terminated demo still stops its daemons
    started = time.monotonic()
    try:
        with Live(console=console, refresh_per_second=2, transient=True, auto_refresh=False) as live:
            while (elapsed := time.monotonic() - started) < seconds:
                if audio_seconds is not None and capture.poll() == 0:
                    break  # all of it read and sent; the learner takes the last windows below
                for name, proc in (("learner", learner), ("capture", capture)):
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with {proc.returncode}:\n{procs.log_tail(proc)}")
                progress.refresh()
                rows = progress.rows(elapsed, len(counter.latencies_ms))
                if not live:
                    if int(elapsed) % 10 == 0:
                        console.print(" | ".join(f"{k}: {v}" for k, v in rows[:7]))
                else:
                    live.update(_table("streamssl demo (Ctrl-C ends it)", rows), refresh=True)
                time.sleep(0.5 if live else 1.0)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        procs.terminate(capture)
        progress.read_capture_summary(capture_summary)
        _wait_for_last_windows(progress)
        learner_rc = procs.terminate(learner, timeout=60)
        counter.stop()
        if events is not None:
            procs.terminate(events)
    elapsed = time.monotonic() - started
    rc = _summarise(console, progress, counter, out, ckpt_dir, elapsed, learner_rc, interrupted)
    if events is not None:
        console.print(events_summary(out / "events.jsonl", cfg, source))
    return rc


def events_summary(path: Path, cfg: Config, source: str) -> Table:
    """The clusters ``streamssl events`` found, against the kinds the scene played (by seq)."""
    from sklearn.metrics import adjusted_rand_score

    from streamssl.capture.sources.scenes import labels_for_windows

    _, _, arg = source.partition(":")
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    records = [r for r in records if r["cluster"] >= 0]
    table = Table(title="sound events: clusters found vs the kinds played")
    for col in ("kind", "windows", "clusters (windows)", "novel"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    if not records:
        table.add_row("no events clustered", "", "", "")
        return table
    window_s = cfg.capture.window_ms / 1000
    labels = labels_for_windows(max(r["seq"] for r in records) + 1, window_s, cfg.capture.seed,
                                float(arg) if arg else None)
    kinds = [labels[r["seq"]] for r in records]
    for kind in sorted(set(kinds)):
        mine = [r for r, k in zip(records, kinds) if k == kind]
        counts: dict[int, int] = {}
        for r in mine:
            counts[r["cluster"]] = counts.get(r["cluster"], 0) + 1
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(kind, str(len(mine)), ", ".join(f"#{c} ({n})" for c, n in top),
                      str(sum(r["novel"] for r in mine)))
    ari = adjusted_rand_score(kinds, [r["cluster"] for r in records])
    table.caption = f"adjusted Rand index {ari:.2f} over {len(records)} windows (1 = clusters are the kinds)"
    return table


def _summarise(console, progress, counter, out, ckpt_dir, elapsed, learner_rc, interrupted) -> int:
    lat = np.array(counter.latencies_ms) if counter.latencies_ms else np.array([np.nan])
    rows = progress.rows(elapsed, len(counter.latencies_ms))
    rows += [
        ("embedding latency p50 / p99", f"{np.percentile(lat, 50):.1f} / {np.percentile(lat, 99):.1f} ms"),
        ("subscriber seq gaps", str(counter.sub.gaps)),
    ]
    checkpoints = sorted(ckpt_dir.glob("*.pt"))
    rows.append(("checkpoint", str(checkpoints[-1]) if checkpoints else "none written"))
    plots: list[Path] = []
    history = ckpt_dir / "metrics.jsonl"
    if history.exists():
        from streamssl.observability.history import History
        from streamssl.observability.report import plot

        plots = plot(History.read(history), out)
    rows.append(("plots", ", ".join(str(p) for p in plots) or "none (no updates recorded)"))
    console.print(_table(f"streamssl demo summary{' (interrupted)' if interrupted else ''}", rows))
    ok = learner_rc == 0 and bool(checkpoints) and bool(plots) and len(counter.latencies_ms) > 0
    if not ok:
        console.print(f"[red]demo incomplete: learner exit {learner_rc}, {len(checkpoints)} checkpoints, "
                      f"{len(plots)} plots, {len(counter.latencies_ms)} embeddings[/]")
    return 0 if ok else 1
