"""Each objective against a direct (loops + numpy) computation of its formula; MoCo's queue mechanics."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from streamssl import config
from streamssl.learning.models import ProjectionHead, build_backbone
from streamssl.learning.objectives import MoCo, apc_loss, cpc_loss, decorrelation_loss, moco_loss, stream_hash
from streamssl.learning.objectives.cpc import cpc_loss_same_sequence


def _logsumexp(v: list[float]) -> float:
    m = max(v)
    return m + math.log(sum(math.exp(x - m) for x in v))


def test_apc_loss_matches_loop():
    rng = np.random.default_rng(0)
    b, t, f, n = 2, 9, 5, 3
    pred, target = rng.standard_normal((b, t, f)), rng.standard_normal((b, t, f))
    total, count = 0.0, 0
    for i in range(b):
        for j in range(t - n):
            for k in range(f):
                total += abs(pred[i, j, k] - target[i, j + n, k])
                count += 1
    got = apc_loss(torch.tensor(pred), torch.tensor(target), n)
    assert math.isclose(float(got), total / count, rel_tol=1e-9)


def _cpc_by_loops(preds, z, negatives) -> float:
    """The CPC formula written out: ``negatives(k, i, j)`` lists the (row, time) frames scored
    against the guess of row i at time j for step k; the positive (i, j + k) is skipped."""
    b, t, _ = z.shape
    per_k = []
    for k in range(1, len(preds) + 1):
        terms = []
        for i in range(b):
            for j in range(t - k):
                p = preds[k - 1][i, j]
                pos = float(p @ z[i, j + k])
                negs = [float(p @ z[r, m]) for r, m in negatives(k, i, j) if (r, m) != (i, j + k)]
                terms.append(-pos + _logsumexp([pos, *negs]))
        per_k.append(np.mean(terms))
    return float(np.mean(per_k))


def test_cpc_loss_matches_loop_with_shared_negatives_and_masked_self():
    rng = np.random.default_rng(1)
    b, t, c, k_steps, n_neg = 2, 6, 4, 3, 5
    z = rng.standard_normal((b, t, c))
    preds = [rng.standard_normal((b, t, c)) for _ in range(k_steps)]
    neg_idx = rng.integers(0, b * t, (k_steps, n_neg))
    neg_idx[0, 0] = 0 * t + 1  # the positive of (b=0, t=0, k=1) drawn as a negative: must be masked
    want = _cpc_by_loops(preds, z, lambda k, i, j: [divmod(int(m), t) for m in neg_idx[k - 1]])  # any frame of the batch
    got = cpc_loss([torch.tensor(p) for p in preds], torch.tensor(z), torch.tensor(neg_idx))
    assert math.isclose(float(got), want, rel_tol=1e-6)


def test_same_sequence_cpc_loss_matches_loop_with_own_frames_as_negatives():
    rng = np.random.default_rng(4)
    b, t, c, k_steps, n_neg = 3, 7, 4, 2, 4
    z = rng.standard_normal((b, t, c))
    preds = [rng.standard_normal((b, t, c)) for _ in range(k_steps)]
    neg_t = rng.integers(0, t, (k_steps, b, n_neg))
    neg_t[0, 1, 0] = 1  # the positive of (b=1, t=0, k=1) drawn as a negative: must be masked
    want = _cpc_by_loops(preds, z, lambda k, i, j: [(i, int(m)) for m in neg_t[k - 1, i]])  # row i's own frames only
    got = cpc_loss_same_sequence([torch.tensor(p) for p in preds], torch.tensor(z), torch.tensor(neg_t))
    assert math.isclose(float(got), want, rel_tol=1e-6)


def test_decorrelation_loss_matches_loop_over_frames_of_all_examples():
    rng = np.random.default_rng(5)
    h = rng.standard_normal((3, 7, 4)) * np.array([0.2, 1.5, 0.7, 3.0])  # two features below std 1, two above
    h[..., 3] += 0.8 * h[..., 1]  # a correlated pair
    x = h.reshape(-1, 4)
    n, d = x.shape
    mean = [sum(x[r, j] for r in range(n)) / n for j in range(d)]
    var = [sum((x[r, j] - mean[j]) ** 2 for r in range(n)) / (n - 1) for j in range(d)]
    variance = sum(max(0.0, 1.0 - math.sqrt(v + 1e-4)) for v in var) / d
    covariance = sum(
        (sum((x[r, i] - mean[i]) * (x[r, j] - mean[j]) for r in range(n)) / (n - 1)) ** 2
        for i in range(d) for j in range(d) if i != j
    ) / d
    got = decorrelation_loss(torch.tensor(h))
    assert math.isclose(float(got), 25.0 * variance + covariance, rel_tol=1e-5)
    assert float(decorrelation_loss(torch.tensor(rng.standard_normal((1, 1, 4))))) == 0.0  # one frame: no statistics


def test_moco_loss_matches_loop_with_masked_negatives():
    rng = np.random.default_rng(2)
    b, p, k, tau = 3, 4, 6, 0.2
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    q, key, queue = unit(rng.standard_normal((b, p))), unit(rng.standard_normal((b, p))), unit(rng.standard_normal((k, p)))
    mask = rng.random((b, k)) < 0.4
    ref = []
    for i in range(b):
        pos = q[i] @ key[i] / tau
        negs = [q[i] @ queue[j] / tau for j in range(k) if not mask[i, j]]
        ref.append(-pos + _logsumexp([pos, *negs]))
    got = moco_loss(torch.tensor(q).float(), torch.tensor(key).float(), torch.tensor(queue).float(),
                    torch.tensor(mask), tau)
    assert math.isclose(float(got), float(np.mean(ref)), rel_tol=1e-5)


def _moco(queue: int = 5, exclude_s: float = 5.0, momentum: float = 0.9) -> tuple[MoCo, torch.nn.Module, ProjectionHead]:
    cfg = config.load("tests/configs/small.toml")
    torch.manual_seed(0)
    backbone = build_backbone(cfg)
    proj = ProjectionHead(backbone.dim, 4)
    return MoCo(backbone, proj, 4, queue, momentum, 0.2, exclude_s), backbone, proj


def test_queue_wraps_around_and_overwrites_oldest():
    moco, _, _ = _moco(queue=5)
    keys = F.normalize(torch.randn(9, 4), dim=1)
    streams, times = torch.arange(9), torch.arange(9) * 10**9
    moco.dequeue_and_enqueue(keys[:3], streams[:3], times[:3])
    assert int(moco.queue_ptr) == 3 and abs(moco.fill - 0.6) < 1e-6
    moco.dequeue_and_enqueue(keys[3:7], streams[3:7], times[3:7])  # slots 3, 4, then wraps to 0, 1
    assert int(moco.queue_ptr) == 2 and moco.fill == 1.0
    expected = keys[[5, 6, 2, 3, 4]]
    torch.testing.assert_close(moco.queue, expected)
    assert moco.queue_stream.tolist() == [5, 6, 2, 3, 4]
    assert moco.queue_time.tolist() == [5e9, 6e9, 2e9, 3e9, 4e9]
    moco.dequeue_and_enqueue(keys, streams, times)  # more keys than slots: the newest 5 survive
    assert sorted(moco.queue_stream.tolist()) == [4, 5, 6, 7, 8]


def test_recent_same_stream_keys_and_empty_slots_are_not_negatives():
    moco, _, _ = _moco(queue=6, exclude_s=5.0)
    a, b = stream_hash("mic-a"), stream_hash("mic-b")
    assert a != b and stream_hash("mic-a") == a  # stable across calls (and processes: blake2b, not hash())
    s = 10**9
    moco.dequeue_and_enqueue(
        F.normalize(torch.randn(5, 4), dim=1),
        torch.tensor([a, a, a, b, b]),
        torch.tensor([100 * s, 96 * s, 94 * s, 100 * s, 50 * s]),
    )  # slot 5 stays empty
    mask = moco.negative_mask(torch.tensor([a, b]), torch.tensor([100 * s, 99 * s]))
    # query from a at t=100: its keys at 100 s and 96 s are within 5 s -> excluded; at 94 s -> a negative;
    # b's keys are negatives whatever their time; the never-written slot 5 is never a negative.
    assert mask[0].tolist() == [True, True, False, False, False, True]
    assert mask[1].tolist() == [False, False, False, True, False, True]
    # masked slots contribute nothing: the loss equals InfoNCE over the unmasked slots only
    q = F.normalize(torch.randn(2, 4), dim=1)
    k = F.normalize(torch.randn(2, 4), dim=1)
    full = moco.loss(q, k, torch.tensor([a, b]), torch.tensor([100 * s, 99 * s]))
    ref = []
    for i in range(2):
        keep = moco.queue[~mask[i]]
        logits = torch.cat([(q[i] * k[i]).sum()[None], q[i] @ keep.T]) / 0.2
        ref.append(-logits[0] + torch.logsumexp(logits, 0))
    torch.testing.assert_close(full, torch.stack(ref).mean())


def test_empty_queue_gives_zero_loss():
    moco, _, _ = _moco()
    q = F.normalize(torch.randn(3, 4), dim=1)
    assert float(moco.loss(q, q, torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))) == 0.0


def test_momentum_update_formula():
    moco, backbone, proj = _moco(momentum=0.9)
    before = [p.clone() for p in [*moco.key_backbone.parameters(), *moco.key_projection.parameters()]]
    with torch.no_grad():
        for p in [*backbone.parameters(), *proj.parameters()]:
            p.add_(torch.randn_like(p))
    query = [p.clone() for p in [*backbone.parameters(), *proj.parameters()]]
    moco.momentum_update(backbone, proj)
    after = [*moco.key_backbone.parameters(), *moco.key_projection.parameters()]
    assert len(after) == len(query) == len(before)
    for k0, q, k1 in zip(before, query, after):
        torch.testing.assert_close(k1, 0.9 * k0 + 0.1 * q)
    assert not any(p.requires_grad for p in after), "the key encoder never receives gradients"


def test_multi_positive_loss_matches_loop_with_several_positives_per_row():
    from streamssl.learning.objectives.moco import multi_positive_loss

    rng = np.random.default_rng(3)
    b, p, k, tau = 4, 4, 7, 0.2
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    q, key, queue = unit(rng.standard_normal((b, p))), unit(rng.standard_normal((b, p))), unit(rng.standard_normal((k, p)))
    pos = rng.random((b, k)) < 0.3
    neg_mask = (rng.random((b, k)) < 0.3) | pos  # a positive is never also a negative
    valid = np.array([True, False, True, False])
    pos[3] = False  # row 3: no adjacent pair, no queue positive -> left out
    ref = []
    for i in range(b):
        ps = ([q[i] @ key[i] / tau] if valid[i] else []) + [q[i] @ queue[j] / tau for j in range(k) if pos[i, j]]
        if not ps:
            continue
        negs = [q[i] @ queue[j] / tau for j in range(k) if not neg_mask[i, j]]
        ref.append(_logsumexp(ps + negs) - _logsumexp(ps))
    t = lambda x: torch.tensor(x).float()  # noqa: E731
    got = multi_positive_loss(t(q), t(key), t(queue), torch.tensor(pos), torch.tensor(neg_mask), tau, torch.tensor(valid))
    assert math.isclose(float(got), float(np.mean(ref)), rel_tol=1e-5)


def _continuity_moco(queue: int = 64, horizon_s: float = 4.0) -> MoCo:
    cfg = config.load("tests/configs/small.toml")
    torch.manual_seed(0)
    backbone = build_backbone(cfg)
    return MoCo(backbone, ProjectionHead(backbone.dim, 4), 4, queue, 0.9, 0.2, 5.0, horizon_s)


def test_continuity_positives_are_recent_keys_of_the_same_stream_and_segment():
    """Stream a: one voice (keys near one direction) for 8 windows, then another voice (near an
    orthogonal one); stream b interleaved. A query of a's second voice finds as positives only
    a's keys of that voice within the horizon, never b's, never the first voice's."""
    moco = _continuity_moco()
    a, b = stream_hash("a"), stream_hash("b")
    s = 10**9
    gen = torch.Generator().manual_seed(0)
    voice1, voice2, other = torch.eye(4)[0], torch.eye(4)[1], torch.eye(4)[2]
    near = lambda v: F.normalize(v + 0.05 * torch.randn(4, generator=gen), dim=0)  # noqa: E731
    # a long warm-up of usual similarities for the change statistics (stream b, steady)
    for t in range(80):
        moco.dequeue_and_enqueue(near(other)[None], torch.tensor([b]), torch.tensor([t * s // 2]))
    t0 = 100 * s
    for i in range(8):
        moco.dequeue_and_enqueue(near(voice1)[None], torch.tensor([a]), torch.tensor([t0 + i * s // 2]))
    for i in range(8, 14):
        moco.dequeue_and_enqueue(near(voice2)[None], torch.tensor([a]), torch.tensor([t0 + i * s // 2]))
    seg = moco.queue_segment
    first = [(moco.queue_stream == a) & (moco.queue_time == t0 + i * s // 2) for i in range(14)]
    ids = [int(seg[m].item()) for m in first]
    assert len(set(ids[:8])) == 1 and len(set(ids[8:])) == 1 and ids[0] != ids[8], ids
    query_t = torch.tensor([t0 + 14 * s // 2])
    mask = moco.positive_mask(near(voice2)[None], torch.tensor([a]), query_t)[0]
    got = sorted(int(x) for x in moco.queue_time[mask])
    horizon_start = int(query_t) - 4 * s
    want = sorted(t0 + i * s // 2 for i in range(8, 14) if t0 + i * s // 2 >= horizon_start)
    assert got == want, (got, want)
    # A query whose adjacent key sounds like someone else opens a segment: no queue positives.
    assert not moco.positive_mask(near(other)[None], torch.tensor([a]), query_t).any()


def test_continuity_loss_without_queue_positives_equals_plain_moco():
    moco = _continuity_moco(horizon_s=4.0)
    plain = _continuity_moco(horizon_s=0.0)
    keys = F.normalize(torch.randn(20, 4), dim=1)
    streams, times = torch.arange(20) % 3 + 7, torch.arange(20) * 10**9
    for m in (moco, plain):
        m.dequeue_and_enqueue(keys, streams, times)
    q, k = F.normalize(torch.randn(2, 4), dim=1), F.normalize(torch.randn(2, 4), dim=1)
    stranger, t = torch.tensor([99, 98]), torch.tensor([30 * 10**9, 31 * 10**9])  # streams the queue never saw
    torch.testing.assert_close(moco.loss(q, k, stranger, t), plain.loss(q, k, stranger, t))


def test_a_checkpoint_from_before_continuity_positives_still_loads():
    moco = _continuity_moco()
    old = {k: v for k, v in moco.state_dict().items() if k not in ("queue_segment", "sim_stats")}
    fresh = _continuity_moco()
    fresh.load_state_dict(old)
    assert (fresh.queue_segment < 0).all(), "old slots never continue a segment"
