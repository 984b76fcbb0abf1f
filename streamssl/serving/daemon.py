"""The learner daemon: sockets and bookkeeping around ``OnlineLearner``.

The serving loop drains every audio message that arrived (the intake validates, tracks
sequences and bounds the backlog), takes what queued up as one batch, embeds and
publishes it, feeds the drift monitor, and checkpoints on an interval (in the background:
``streamssl.serving.checkpointer``). Training runs
beside it on ``streamssl.serving.trainer.Trainer``'s thread (``learner.serve_while_learning``,
the default): the loop hands each batch over and goes back to the socket, embedding
from a copy of the weights that the trainer refreshes after every step, so a window
never waits for a step in progress. With ``serve_while_learning = false`` the loop takes
the step itself after publishing. Input can never crash it: a bad message is a counted
rejection, a non-finite loss a counted skipped step, a failed checkpoint write a counted
error with the previous one kept.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import zmq
from threadpoolctl import threadpool_limits
from zmq.utils.monitor import recv_monitor_message

from streamssl import __version__, wire
from streamssl.learning import checkpoint
from streamssl.config import Config, ConfigError
from streamssl.serving.checkpointer import Checkpointer
from streamssl.serving.intake import Intake
from streamssl.serving.trainer import Trainer
from streamssl.observability.metrics import LearnerMetrics, RankLabelled, serve
from streamssl.observability.probe_set import ProbeSet
from streamssl.observability.throughput import RealtimeFactor
from streamssl.transport import make_socket, start_authenticator

log = logging.getLogger(__name__)



class LearnerDaemon:
    """Receives audio, publishes embeddings, learns; ``run()`` until ``stop()``."""

    def __init__(self, cfg: Config, metrics: LearnerMetrics | None = None):
        import torch  # deferred: the CLI imports this module only for `streamssl learn`

        from streamssl.learning.device import resolve_device
        from streamssl.observability.drift import DriftMonitor
        from streamssl.learning.learner import OnlineLearner

        if cfg.learner.threads:
            torch.set_num_threads(cfg.learner.threads)
        # The daemon's numpy work (drift statistics, the effective rank) is small: with
        # OpenBLAS threads on a busy CPU a 256 x 1024 SVD took 1-5 s instead of 70 ms.
        threadpool_limits(limits=1, user_api="blas")
        self.cfg = cfg
        self.metrics = metrics or LearnerMetrics()
        self._stop = threading.Event()
        device = resolve_device(cfg.learner.device)
        self.learner = OnlineLearner(cfg, device=str(device))
        self.group = None  # one rank of a learner group (torchrun): streamssl.learning.distributed
        from streamssl.learning import distributed

        if distributed.launched():
            if not cfg.learner.serve_while_learning:
                raise ConfigError("a learner group steps on its training thread: learner.serve_while_learning must be true")
            self.group = distributed.Group.from_environment(device)
        self.rank = self.group.rank if self.group is not None else 0
        self.drift = DriftMonitor(cfg.drift, self.metrics, log=log)
        self.intake = Intake(
            self.metrics, cfg.learner.max_backlog, on_new_session=self.learner.reset_stream,
            max_streams=cfg.learner.max_streams, idle_s=cfg.learner.stream_idle_s, on_evict=self.learner.reset_stream,
            max_message_bytes=cfg.transport.max_message_bytes,
        )
        self.probe = ProbeSet(cfg.drift.probe_size, cfg.features.sample_rate)
        self.rtf = RealtimeFactor()
        self.checkpoint_dir = Path(cfg.learner.checkpoint_dir) if cfg.learner.checkpoint_dir else None
        self.history = None
        if self.checkpoint_dir:
            from streamssl.observability.history import HistoryRecorder

            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            self._resume()
            if self.rank == 0:  # a group's run history is rank 0's
                self.history = HistoryRecorder(self.checkpoint_dir / "metrics.jsonl")
        self.trainer: Trainer | None = None
        if cfg.learner.serve_while_learning:
            self.learner.serve_from_copy()
            if self.group is not None:
                self.learner.join_group(self.group)
            self.trainer = Trainer(self.learner, cfg.learner.batch_max, cfg.learner.max_backlog, self.group,
                                   idle_replay=cfg.learner.idle_replay)
        self.checkpointer = None
        if self.checkpoint_dir and self.rank == 0:  # one model, one checkpoint: rank 0 writes it
            self.checkpointer = Checkpointer(
                self.learner, self.checkpoint_dir, cfg.learner.checkpoint_keep, cfg.learner.checkpoint_interval_s,
                self.metrics, self._checkpoint_extras, self.trainer,
            )
        self._torch = torch
        self._init_metrics(str(device))

    # --- set-up -------------------------------------------------------------------

    def _init_metrics(self, device: str) -> None:
        from streamssl.learning.objectives import OBJECTIVES

        m = self.metrics
        for name in (*OBJECTIVES, "total"):
            m.loss.labels(name)
        n_params = sum(p.numel() for p in self.learner.parameters())
        m.info.info({
            "version": __version__,
            "model": f"{self.cfg.model.context}-{self.cfg.model.encoder_channels}x{self.cfg.model.encoder_layers}",
            "parameters": str(n_params),
            "device": device,
            "world_size": str(self.group.world if self.group is not None else 1),
        })
        m.model_step.set(self.learner.step)
        m.queue_fill.set(self.learner.queue_fill)

    def _resume(self) -> None:
        state = checkpoint.load_latest(self.checkpoint_dir)
        if state is None:
            log.info("no checkpoint in %s: starting from step 0", self.checkpoint_dir)
            return
        if self.rank:  # rank 0's checkpoint: the group's model; its streams and replay are rank 0's
            self.learner.load_state_dict(state["learner"], model_only=True)
            log.info("rank %d resumed the model at step %d; its streams start afresh", self.rank, self.learner.step)
            return
        self.learner.load_state_dict(state["learner"])
        extra = state.get("daemon", {})
        self.intake.load_state_dict(extra.get("streams", {}))
        self.probe.load(extra.get("probe", []))
        if "drift" in extra:
            self.drift.load_state_dict(extra["drift"])
        self.metrics.checkpoint_timestamp.set(float(state.get("saved_at", time.time())))
        log.info("resumed from checkpoint at step %d", self.learner.step)

    # --- the loop -----------------------------------------------------------------

    def stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> int:
        cfg = self.cfg
        ctx = zmq.Context()
        auth = start_authenticator(ctx, cfg.transport)
        audio = make_socket(ctx, zmq.PULL, cfg.transport, bind=cfg.learner.audio_bind)
        pub = make_socket(ctx, zmq.PUB, cfg.transport, bind=cfg.learner.embeddings_bind)
        registry = self.metrics.registry if self.group is None else RankLabelled(self.metrics.registry, self.rank)
        server = serve(registry, cfg.learner.metrics_host, cfg.learner.metrics_port)
        # Disconnects are the only trace of a message libzmq refused (beyond its size ceiling).
        monitor = audio.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        poller = zmq.Poller()
        poller.register(audio, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        log.info(
            "learning: audio %s, embeddings %s, metrics %s:%d, step %d%s",
            cfg.learner.audio_bind, cfg.learner.embeddings_bind, cfg.learner.metrics_host, cfg.learner.metrics_port,
            self.learner.step, f", rank {self.rank} of {self.group.world}" if self.group is not None else "",
        )
        if self.trainer is not None:
            self.trainer.start()
        try:
            while not self._stop.is_set():
                room = self._room()
                wait_ms = 0 if self.intake.backlog else 20 if self.trainer is not None else 100
                ready = dict(poller.poll(wait_ms)) if room else {}
                if not room:
                    time.sleep(0.002)  # the trainer is full: leave the audio in the socket (back-pressure)
                if audio in ready:
                    self._drain(audio, room)
                if monitor in ready:
                    self._count_disconnects(monitor)
                batch = self.intake.take(min(room, cfg.learner.max_backlog))  # serve everything queued; learn from a sample
                if batch:
                    self._process(batch, pub)
                if self.trainer is not None:
                    self._collect_steps()
                    if self.trainer.group_stopped:
                        log.warning("another rank stopped the learner group: stopping")
                        break
                self._housekeeping()
        finally:
            if self.trainer is not None:
                self.trainer.stop()
                self._collect_steps(reraise=False)  # a failed step was raised in the loop already
            self.save_checkpoint()
            if self.checkpointer is not None:
                self.checkpointer.close()
            audio.disable_monitor()
            monitor.close(0)
            audio.close(0)
            pub.close(cfg.transport.linger_ms)
            if auth is not None:
                auth.stop()
            ctx.term()
            if server is not None:
                server[0].shutdown()
        return 0

    def _room(self) -> int:
        """Windows the loop may take now: all it can (live), or with ``learner.learn_every_window``
        what the training thread has room for, so a lossless capture waits rather than anything
        being shed or left untrained."""
        lc = self.cfg.learner
        if not lc.learn_every_window or self.trainer is None:
            return 4 * lc.max_backlog
        return max(0, lc.batch_max - self.trainer.pending - len(self.intake.backlog))

    def _drain(self, sock: zmq.Socket, most: int) -> None:
        # Bounded so a flood cannot starve learning; the intake sheds beyond max_backlog.
        for _ in range(most):
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            window = self.intake.offer(parts)
            if window is not None:
                self.probe.offer(window)

    def _count_disconnects(self, monitor: zmq.Socket) -> None:
        while monitor.poll(0):
            event = recv_monitor_message(monitor)
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self.metrics.disconnects.inc()

    def _process(self, batch: list[wire.AudioWindow], pub: zmq.Socket) -> None:
        m = self.metrics
        started = time.perf_counter()
        prepared = self.learner.prepare(batch)  # each window converted once, for embed and update
        frames = self.learner.embed(prepared)
        now = time.time_ns()
        for frame in frames:
            frame = replace(frame, sent_ns=now)
            try:
                pub.send_multipart(wire.encode_embedding(frame), zmq.NOBLOCK, copy=False)
            except zmq.Again:  # PUB does not block; kept for completeness
                pass
            m.embeddings_published.labels(frame.stream_id).inc()
            m.latency.observe(max(0.0, (now - frame.capture_ns) / 1e9))
        for w in batch:
            self.drift.observe_window(w.mono_float(), w.sample_rate, w.stream_id)
        if frames:
            self.drift.observe_embeddings(np.stack([f.embedding for f in frames]), [f.stream_id for f in frames])
        if self.trainer is not None:
            self.trainer.submit(prepared)
            return
        stats = self.learner.update(prepared, learn_at_most=self.cfg.learner.batch_max)
        self._observe_step(stats, sum(w.duration_s for w in batch), time.perf_counter() - started)

    def _collect_steps(self, reraise: bool = True) -> None:
        """Metrics of the steps the training thread finished since the last call."""
        if reraise:
            self.trainer.check()
        while not self.trainer.dropped.empty():
            self.metrics.untrained.labels(self.trainer.dropped.get()).inc()
        while not self.trainer.results.empty():
            stats, batch = self.trainer.results.get()
            self._observe_step(stats, sum(p.window.duration_s for p in batch), stats.duration_s, live=bool(batch))

    def _observe_step(self, stats, audio_s: float, busy_s: float, live: bool = True) -> None:
        """Metrics of one step. A replay-only step (``live`` false, taken in idle time) counts as
        an update and moves the model, but its losses (on audio already learned from) stay out
        of the loss gauges and the loss drift detector, and its time out of the real-time factor,
        which says whether the learner keeps up with new audio."""
        m = self.metrics
        for stream_id in stats.untrained:
            m.untrained.labels(stream_id).inc()
        if stats.skipped:
            m.nonfinite.inc()
        else:
            m.steps.inc()
            if not live:
                m.replay_steps.inc()
            else:
                for name, value in stats.losses.items():
                    m.loss.labels(name).set(value)
                if self.history is not None:
                    self.history.add_losses(stats.losses)
                self.drift.observe_loss(stats.losses["total"])
        m.step_seconds.observe(stats.duration_s)
        m.batch_size.observe(stats.batch_size)
        m.lr.set(stats.lr)
        m.grad_norm.set(stats.grad_norm)
        m.model_step.set(self.learner.step)
        m.queue_fill.set(self.learner.queue_fill)
        if self.probe and self.drift.probe_due(stats.step):
            self.drift.check_probe(self.learner.embed_segments(self.probe.array()))
        if live and self.rtf.observe(audio_s, busy_s) > 0:
            m.rtf.set(self.rtf.value)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        self.intake.expire_idle()
        self.learner.retain_streams(self.intake.streams)
        if self.history is not None and self.history.due(now):
            self.history.write(self.learner.step, self.rtf.value, self.rtf.audio_seconds, self.drift.last_cka,
                               self.drift.pop_detections())
        if self.checkpointer is not None:
            self.checkpointer.poll(now)
        self.metrics.observe_process_memory()
        if self._torch.cuda.is_available():
            self.metrics.device_memory.set(self._torch.cuda.memory_allocated())

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint now (shutdown, tests); periodic ones go through ``checkpointer.poll``."""
        return self.checkpointer.save_now() if self.checkpointer is not None else None

    def _checkpoint_extras(self) -> dict:
        """The daemon's own state in a checkpoint, read on the serving loop."""
        return {"streams": self.intake.state_dict(), "probe": self.probe.state(), "drift": self.drift.state_dict()}


def install_signal_handlers(daemon: LearnerDaemon) -> None:
    """SIGTERM/SIGINT end the loop, which then writes a final checkpoint."""
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
