"""Data-parallel learning over several processes: ``torch.distributed``, launched by ``torchrun``.

N learner ranks hold one model. Each serves its own streams (its own sockets, streaming
state, replay buffer) and every step they all take together:

- **one lockstep tick**: the training threads all-reduce ``[new windows, stop]``
  every ``TICK_S`` or when windows are waiting. If no rank has new audio the tick is a
  collective skip (nobody steps); otherwise every rank steps, a rank without new windows
  on its replay alone, a rank with nothing at all on an empty batch (it still joins the
  reductions with zeros). A rank asked to stop sets ``stop`` and the whole group stops
  at that tick, so nobody is left waiting in a collective.
- **normaliser statistics reduced**: the per-bin count, sum and sum of squares of every
  rank's new frames are summed, so each rank folds the group's batch moments in, as one
  learner with all the windows would.
- **gradients all-reduced**: after backward, every rank's gradient times its number of
  examples is summed in one flat bucket and divided by the group's examples: the mean
  over the whole group's batch, which 2 ranks with B windows each and 1 rank with 2B
  give alike (``tests/test_distributed.py``). This is DDP's all-reduce done by hand,
  after backward, for three reasons: ``DistributedDataParallel`` divides by the world
  size (a rank with fewer windows would weigh as much as a full one), it must own the
  forward pass (one online forward here feeds APC, CPC and MoCo's query through four
  modules), and it broadcasts buffers from rank 0 (the normaliser and MoCo's queue are
  reduced and gathered instead). A non-finite loss anywhere is added to the same bucket,
  so all ranks skip the step together.
- **MoCo keys all-gathered** with their stream hash and capture time, in rank order,
  so every rank's queue receives the same keys: bit-identical queues, as in MoCo's own
  ``concat_all_gather``.

Ranks start with the same weights (the seed) and rank 0's module state is broadcast
after any resume (``broadcast_modules``), after the group checked that every rank
resumed at the same step. Augmentations and CPC negatives come from a per-rank
generator (``rank_seed``). Two terms read statistics of a rank's own batch, not the
group's: CPC's negatives come from that rank's examples, and the decorrelation term's
frame covariance is that rank's (as BatchNorm without SyncBatchNorm; VICReg gathers
its embeddings first). Each rank's batch holds many frames (B x ~80), so the estimate
is close; the 2B-versus-2xB equivalence test leaves both out. Rank 0 alone writes
checkpoints; all ranks load the newest one on restart (the directory must be shared,
e.g. one host or a network file system).

Only gloo (CPU) and NCCL (CUDA) are used, through ``torch.distributed``; nothing here
pickles (``all_gather_object`` would).
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

TICK_S = 0.02  # an idle training thread's lockstep tick: how late a window's step can start
TIMEOUT_S = 300.0  # a collective waiting this long means a peer is gone (torchrun then restarts the group)


@dataclass
class Tick:
    """What the group has this tick (sums over ranks)."""

    new: int  # new windows
    stop: bool  # some rank is stopping: all stop


def launched() -> bool:
    """True when torchrun (or an equivalent launcher) started this process as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_seed(seed: int, rank: int) -> int:
    """Generator seed of ``rank``: rank 0 keeps ``seed`` (one rank is the single-process learner)."""
    return seed if rank == 0 else seed + 1_000_003 * rank


class Group:
    """This process's place in the learner group and the collectives the learner needs."""

    def __init__(self, device: torch.device):
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        # NCCL reduces on the GPU; gloo on the CPU. Small control tensors follow the backend.
        self.device = device if dist.get_backend() == "nccl" else torch.device("cpu")
        self.comm_s = 0.0  # seconds spent in collectives (the bench reads it)
        self.bytes_reduced = 0  # gradient bytes all-reduced, summed over steps

    @classmethod
    def from_environment(cls, device: torch.device) -> "Group":
        """Join the group torchrun set up (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...)."""
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            timeout = datetime.timedelta(seconds=TIMEOUT_S)
            if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
                # torchrun shares its rendezvous store with the workers, and the keys of a group
                # that torchrun restarted are still there: a restarted rank read its peer's old
                # gloo address and never connected (pytorch/pytorch#135712). Each attempt gets
                # its own key space. (The restart count is per torchrun agent: across several
                # nodes launch with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, README.)
                store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                                      int(os.environ["WORLD_SIZE"]), is_master=False, timeout=timeout)
                attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
                dist.init_process_group(backend, store=dist.PrefixStore(f"streamssl/attempt-{attempt}", store),
                                        rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                                        timeout=timeout)
            else:
                dist.init_process_group(backend, timeout=timeout)
        group = cls(device)
        log.info("rank %d of %d (%s)", group.rank, group.world, dist.get_backend())
        return group

    def _reduce(self, t: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
        started = time.perf_counter()
        dist.all_reduce(t, op=op)
        self.comm_s += time.perf_counter() - started
        return t

    # --- lockstep -----------------------------------------------------------------

    def tick(self, new: int, stop: bool) -> Tick:
        t = self._reduce(torch.tensor([new, int(stop)], dtype=torch.long, device=self.device))
        n, s = t.tolist()
        return Tick(int(n), bool(s))

    def check_same_step(self, step: int) -> None:
        """Every rank must resume at the same step: one model, one checkpoint."""
        t = torch.tensor([step, -step], dtype=torch.long, device=self.device)
        self._reduce(t, dist.ReduceOp.MAX)
        high, low = int(t[0]), -int(t[1])
        if high != low:
            raise RuntimeError(
                f"ranks resumed at different steps ({low}..{high}): they must share one checkpoint directory "
                "(learner.checkpoint_dir on a file system every rank sees)"
            )

    def broadcast_modules(self, modules: dict[str, torch.nn.Module]) -> None:
        """Rank 0's parameters and buffers to every rank (as DDP does when it wraps a module)."""
        for _, mod in sorted(modules.items()):
            for t in [*mod.parameters(), *mod.buffers()]:
                data = t.data if t.device == self.device else t.data.to(self.device)
                dist.broadcast(data, src=0)
                if data is not t.data:
                    t.data.copy_(data)

    # --- one step -----------------------------------------------------------------

    def reduce_moments(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Frames (N, F) of this rank -> the group's (mean (F,), population variance (F,), count)."""
        x = frames.reshape(-1, frames.shape[-1]).double()
        t = torch.cat([x.new_tensor([x.shape[0]]), x.sum(0), (x * x).sum(0)]).to(self.device)
        self._reduce(t)
        f = frames.shape[-1]
        count = int(t[0].item())
        if count == 0:
            return frames.new_zeros(f), frames.new_ones(f), 0
        mean = t[1 : 1 + f] / count
        var = (t[1 + f :] / count - mean * mean).clamp_min(0.0)
        return mean.to(frames.device, torch.float32), var.to(frames.device, torch.float32), count

    def reduce_gradients(self, params: list[torch.nn.Parameter], examples: int, bad: bool) -> tuple[bool, int]:
        """Replace each gradient by the group's example-weighted mean. Returns (any rank's loss or
        gradient non-finite: every rank then skips the step, the group's examples)."""
        grads = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device) for p in params]
        flat = torch.cat([*(g.float() for g in grads), grads[0].new_tensor([float(bad), float(examples)])])
        flat = flat.to(self.device)
        flat[:-2].mul_(float(examples))
        self._reduce(flat)
        self.bytes_reduced += flat.numel() * flat.element_size()
        total_examples = int(round(flat[-1].item()))
        any_bad = bool(flat[-2].item() > 0) or not bool(torch.isfinite(flat[:-2]).all())
        flat = flat[:-2].div_(max(total_examples, 1))
        offset = 0
        for p in params:
            n = p.numel()
            g = flat[offset : offset + n].view_as(p).to(p.device, p.dtype)
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
            offset += n
        return any_bad, total_examples

    def gather_keys(self, keys: torch.Tensor, stream: torch.Tensor, time_ns: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every rank's (n_r, P) keys with stream hashes and times, concatenated in rank order."""
        started = time.perf_counter()
        n = torch.tensor([keys.shape[0]], dtype=torch.long, device=self.device)
        counts = [torch.zeros_like(n) for _ in range(self.world)]
        dist.all_gather(counts, n)
        counts = [int(c.item()) for c in counts]
        most = max(counts)
        if most > 0:
            padded = torch.zeros(most, keys.shape[1], dtype=keys.dtype, device=self.device)
            padded[: keys.shape[0]] = keys.to(self.device)
            meta = torch.zeros(most, 2, dtype=torch.long, device=self.device)
            meta[: keys.shape[0]] = torch.stack([stream, time_ns], 1).to(self.device)
            all_keys = [torch.empty_like(padded) for _ in range(self.world)]
            all_meta = [torch.empty_like(meta) for _ in range(self.world)]
            dist.all_gather(all_keys, padded)
            dist.all_gather(all_meta, meta)
            keys = torch.cat([k[:c] for k, c in zip(all_keys, counts)]).to(keys.device)
            meta = torch.cat([m[:c] for m, c in zip(all_meta, counts)]).to(stream.device)
            stream, time_ns = meta[:, 0].contiguous(), meta[:, 1].contiguous()
        self.comm_s += time.perf_counter() - started
        return keys, stream, time_ns

def rank_endpoint(endpoint: str, rank: int) -> str:
    """``tcp://host:port`` -> ``tcp://host:(port + rank)``; other transports cannot be offset."""
    scheme, _, rest = endpoint.partition("://")
    host, sep, port = rest.rpartition(":")
    if scheme != "tcp" or not sep or not port.isdigit():
        raise ValueError(f"{endpoint!r}: a learner group needs tcp://HOST:PORT endpoints (rank r binds PORT + r)")
    return f"tcp://{host}:{int(port) + rank}"


def rank_ports(audio_bind: str, embeddings_bind: str, metrics_port: int, rank: int, world: int
               ) -> tuple[str, str, int]:
    """The endpoints and metrics port of ``rank``: each configured port + rank. Refuses port sets
    that collide between any two ranks (e.g. audio 5600 and embeddings 5601 with 2 ranks)."""
    ports = {
        "audio": [int(rank_endpoint(audio_bind, r).rpartition(":")[2]) for r in range(world)],
        "embeddings": [int(rank_endpoint(embeddings_bind, r).rpartition(":")[2]) for r in range(world)],
    }
    if metrics_port:
        ports["metrics"] = [metrics_port + r for r in range(world)]
    seen: dict[int, str] = {}
    for name, values in ports.items():
        for r, port in enumerate(values):
            if port > 65535:
                raise ValueError(f"{name} port of rank {r} would be {port}: choose a lower base port")
            if port in seen:
                raise ValueError(
                    f"with {world} ranks the {name} port of rank {r} ({port}) collides with the {seen[port]} ports "
                    f"(rank r binds each configured port + r): space the audio, embeddings and metrics ports "
                    f"at least {world} apart"
                )
            seen[port] = name
    return (rank_endpoint(audio_bind, rank), rank_endpoint(embeddings_bind, rank),
            metrics_port + rank if metrics_port else 0)
