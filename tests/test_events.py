"""Sound-event discovery (``streamssl.events``): clusters that keep their names while the model
drifts, novelty on a sound never heard, state that resumes exactly, the wire record.

The clusterer tests feed synthetic embeddings whose truth is known: kinds of sound as
Gaussian blobs (64 dimensions, unit noise, means 8 apart) in segments of 6-14 windows,
as a scene gives them. The floors are set by what a working clusterer must do on blobs
this far apart (a nearest-mean rule labels >99 % of single points right), leaving room
for the windows a young space puts in clusters of their own: ARI >= 0.9.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from streamssl import config, wire
from streamssl.events.clusterer import EventClusterer, ModelChanged

DIM = 64
KINDS = 4


def _cfg(**over):
    # Warm-up: the first components (60 windows) plus every kind met about twice (~120 windows).
    return dataclasses.replace(config.EventsConfig(), **{"warmup_windows": 120, **over})


def _scene(n_segments: int, seed: int, drift_rad: float = 0.0, novel_at: int | None = None):
    """(embeddings, kinds): segments of random kinds; with ``drift_rad`` every point turns by
    up to that angle in the plane of two class directions (the model's weights moving);
    from segment ``novel_at`` on, one segment of a fifth kind."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((KINDS + 1, DIM))
    means *= 8 / np.linalg.norm(means, axis=1, keepdims=True)  # |m| = 8: kinds ~11 apart, noise ~8 per point
    u, v = np.linalg.qr(rng.standard_normal((DIM, 2)))[0].T
    kinds, points = [], []
    previous = None
    for s in range(n_segments):
        kind = KINDS if s == novel_at else int(rng.choice([k for k in range(KINDS) if k != previous]))
        previous = kind
        for _ in range(int(rng.integers(6, 15))):
            kinds.append(kind)
            points.append(means[kind] + rng.standard_normal(DIM))
    x = np.array(points)
    if drift_rad:
        theta = np.linspace(0, drift_rad, len(x))[:, None]
        a, b = x @ u, x @ v
        x = x + (np.cos(theta) - 1) * (a[:, None] * u + b[:, None] * v) + np.sin(theta) * (a[:, None] * v - b[:, None] * u)
    return x, np.array(kinds)


def _run(c: EventClusterer, x: np.ndarray, stream: str = "s", start: int = 0):
    return [c.observe(stream, e, start + i) for i, e in enumerate(x)]


def test_kinds_of_sound_get_stable_clusters_while_the_model_drifts():
    x, kinds = _scene(120, seed=1, drift_rad=np.pi / 3)
    c = EventClusterer(_cfg(), DIM)
    out = _run(c, x)
    ids = np.array([a.cluster for a in out])
    after = np.arange(len(x)) >= c.cfg.warmup_windows
    # The drift moves every kind by |m| * 2 sin(pi/6) = 8 apart-units: many radii in the clusterer's space.
    assert adjusted_rand_score(kinds[after], ids[after]) >= 0.9
    assert c.clusters_alive >= KINDS
    assert not any(a.novel for a in out), "a drifting but familiar scene raised novelty"


def test_a_never_heard_kind_is_flagged_within_the_novelty_run():
    x, kinds = _scene(90, seed=2, novel_at=80)
    c = EventClusterer(_cfg(), DIM)
    out = _run(c, x)
    start = int(np.argmax(kinds == KINDS))
    flags = [i for i, a in enumerate(out) if a.novel]
    assert flags and flags[0] >= start, f"novelty before the novel kind: {flags}"
    assert flags[0] - start <= c.cfg.novelty_windows  # the run of far windows, at most one more
    assert len([f for f in flags if f < start]) == 0


def test_nothing_is_novel_during_the_warm_up():
    x, _ = _scene(20, seed=3)
    c = EventClusterer(_cfg(warmup_windows=10**6), DIM)
    assert not any(a.novel for a in _run(c, x))
    assert any(a.far for a in _run(EventClusterer(_cfg(warmup_windows=10**6), DIM), x)), "the first windows are far"


def test_state_round_trips_through_json_and_continues_identically():
    x, _ = _scene(40, seed=4)
    a = EventClusterer(_cfg(), DIM)
    _run(a, x[:150])
    b = EventClusterer(_cfg(), DIM)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert _run(a, x[150:], start=150) == _run(b, x[150:], start=150)


def test_embeddings_of_another_model_are_refused():
    c = EventClusterer(_cfg(), DIM)
    c.observe("s", np.zeros(DIM), 10)
    with pytest.raises(ModelChanged):
        c.observe("s", np.zeros(DIM + 1), 11)
    with pytest.raises(ModelChanged):
        c.observe("s", np.zeros(DIM), 9)


def test_event_messages_round_trip_and_refuse_other_kinds():
    e = wire.SoundEvent("mic", 7, 123, 42, 3, 0.25, True, False, session=9, sent_ns=5)
    assert wire.decode_event(wire.encode_event(e)) == e
    assert e.record()["cluster"] == 3 and e.record()["novel"] is True
    a = EventClusterer(_cfg(), DIM).observe("s", np.ones(DIM), 0)
    assert all(type(v) in (int, float, bool) for v in vars(a).values()), "plain Python values: they go to JSON"
    frame = wire.EmbeddingFrame("mic", 1, 2, 3, np.ones(4, np.float32))
    with pytest.raises(wire.WireError) as err:
        wire.decode_event(wire.encode_embedding(frame))
    assert err.value.reason == wire.Reason.KIND


def test_a_full_disk_is_counted_and_the_service_goes_on():
    """Events written to /dev/full (every write fails with ENOSPC, a real full device)."""
    from streamssl.events.service import EventsService

    full = open("/dev/full", "w")
    service = EventsService(config.Config(), "tcp://127.0.0.1:1", out=full)
    for seq in range(3):
        frame = wire.EmbeddingFrame("mic", seq, seq, seq, np.full(DIM, float(seq), np.float32))
        service._write(service.handle(frame))  # noqa: SLF001 - the loop's write, without sockets
    with pytest.raises(OSError):
        full.close()  # what is still buffered cannot be written either (the command logs it)
    assert service.metrics.registry.get_sample_value("streamssl_events_write_errors_total") == 3
    assert service.metrics.registry.get_sample_value("streamssl_events_windows_total", {"stream": "mic"}) == 3
