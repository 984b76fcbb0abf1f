"""The tensor core of learning: front end, networks, objectives and optimizer over prepared tensors.

``LearnerCore`` knows nothing of streams, windows or sockets. It takes audio that is
already mono float at the feature rate and does the two things the product is made of:

- ``embed_frames``: normalised log-mel of several streams plus their carried backbone
  states -> context frames and new states (no grad, current weights);
- ``step``: one optimizer step on a batch of fixed-length examples (B, S) with their
  stream hashes and capture times (``streamssl.learning.views`` says what an example
  holds and which views each objective reads). One online forward on the query view
  serves every objective — APC, CPC and the decorrelation term read its frames, MoCo
  pools it into the query — and only no-grad passes come on top (MoCo's key view through
  the momentum encoder, CPC's clean targets through the encoder), so a step costs about
  one plain training step. A non-finite loss or gradient skips the step and leaves every
  weight, statistic and buffer as it was.

``streamssl.learning.learner.OnlineLearner`` feeds it from live windows; the offline
reference loop of ``streamssl bench`` feeds it from tensors prepared in advance. Both
call the same ``step``, so their speed ratio measures only what the online path adds.

Randomness (augmentations, CPC negatives) comes from one torch generator owned here and
saved in the state; weights are drawn from the seed under ``fork_rng``, so the global
RNGs are neither used nor touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from streamssl.config import Config
from streamssl.learning.device import autocast, resolve_device
from streamssl.learning.embedder import Embedder
from streamssl.learning.features import LogMel, Normaliser
from streamssl.learning.models import Backbone, BackboneState, ProjectionHead, build_backbone
from streamssl.learning.objectives import APC, CPC, OBJECTIVES, MoCo, decorrelation_loss
from streamssl.learning.readout import readout_dim
from streamssl.learning.views import ViewMaker, key_samples


@dataclass
class StepResult:
    """What one ``LearnerCore.step`` did to the weights."""

    losses: dict[str, float]  # enabled objectives and "total"
    grad_norm: float
    skipped: bool  # non-finite loss or gradient: nothing was changed
    keys: torch.Tensor | None = None  # (new, P) MoCo keys of the new examples (the diverse replay ranks by them)


class LearnerCore:
    """Modules, optimizer and generator of one learner; ``embed_frames`` and ``step`` (module docstring)."""

    def __init__(self, cfg: Config, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.device = resolve_device(str(device))
        f, m, o, lc = cfg.features, cfg.model, cfg.objectives, cfg.learner
        self.weights = {name: getattr(o, f"{name}_weight") for name in OBJECTIVES}
        with torch.random.fork_rng(devices=[]):  # weight init from the seed, global RNG untouched
            torch.manual_seed(lc.seed)
            self.logmel = LogMel(f)
            self.normaliser = Normaliser(f.n_mels, f.norm_momentum)
            self.backbone: Backbone = build_backbone(cfg)
            self.apc = APC(m.context_dim, f.n_mels, o.apc_shift) if o.apc_weight > 0 else None
            self.cpc = (
                CPC(m.context_dim, m.encoder_channels, o.cpc_steps, o.cpc_negatives, o.cpc_negatives_from)
                if o.cpc_weight > 0 else None
            )
            self.projection = ProjectionHead(m.context_dim, m.projection_dim) if o.moco_weight > 0 else None
            self.moco = (
                MoCo(self.backbone, self.projection, m.projection_dim, o.moco_queue, o.moco_momentum,
                     o.moco_temperature, o.moco_exclude_recent_s, o.moco_horizon_s)
                if self.projection is not None else None
            )
        for mod in self.modules().values():
            mod.to(self.device)
        params = self.parameters()
        if lc.optimizer == "adamw":
            self.optimizer: torch.optim.Optimizer = torch.optim.AdamW(params, lr=lc.lr, weight_decay=lc.weight_decay)
        else:
            self.optimizer = torch.optim.RMSprop(params, lr=lc.lr, weight_decay=lc.weight_decay)
        self.generator = torch.Generator().manual_seed(lc.seed)  # augmentations, CPC negatives
        self.window_samples = int(round(lc.window_s * f.sample_rate))
        self.example_samples = self.window_samples + key_samples(o, self.window_samples)
        self.views = ViewMaker(o, self.logmel, self.normaliser, self.window_samples)
        self.step_count = 0
        self.skipped_steps = 0
        self.group = None  # a streamssl.learning.distributed.Group when this is one rank of several

    @property
    def dim(self) -> int:
        """Length of the published embedding (``readout.pool`` of z and c)."""
        return readout_dim(self.backbone.z_dim, self.backbone.dim)

    @property
    def frame_dim(self) -> int:
        """Length of one context frame c_t (the optional per-frame embeddings)."""
        return self.backbone.dim

    def modules(self) -> dict[str, nn.Module]:
        """Every module whose state is checkpointed, by name (disabled objectives are absent)."""
        mods = {"logmel": self.logmel, "normaliser": self.normaliser, "backbone": self.backbone}
        for name in ("apc", "cpc", "projection", "moco"):
            if getattr(self, name) is not None:
                mods[name] = getattr(self, name)
        return mods

    def parameters(self) -> list[nn.Parameter]:
        """Trainable parameters (the momentum key encoder is not one)."""
        mods = [self.backbone, self.apc, self.cpc, self.projection]
        return [p for mod in mods if mod is not None for p in mod.parameters() if p.requires_grad]

    # --- inference ----------------------------------------------------------------

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, S) audio -> normalised log-mel (B, T, F)."""
        return self.normaliser(self.logmel(audio))

    @property
    def embedder(self) -> Embedder:
        """Embedding with the training modules themselves, as they are now (no copy)."""
        return Embedder(self.logmel, self.normaliser, self.backbone, self.device, self.step_count)

    def embed_frames(
        self, mel: torch.Tensor, states: list[BackboneState]
    ) -> tuple[torch.Tensor, torch.Tensor, list[BackboneState]]:
        """Raw log-mel (G, T, F) of G streams with equal ``batch_key`` -> embeddings (G, dim), c (G, T, frame_dim), new states."""
        return self.embedder.embed_frames(mel, states)

    def embed_clips(self, audio: torch.Tensor) -> torch.Tensor:
        """(n, S) audio, each clip from a fresh state -> embeddings (n, dim)."""
        return self.embedder.embed_clips(audio)

    # --- learning -----------------------------------------------------------------

    def losses(
        self, audio: torch.Tensor, stream: torch.Tensor, time_ns: torch.Tensor, in_batch_moco: bool = False
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Each enabled objective's loss on a batch of examples (B, S); also MoCo's keys for the queue."""
        losses: dict[str, torch.Tensor] = {}
        keys = None
        g = self.generator
        with torch.no_grad():
            v = self.views(audio, g, with_key=self.moco is not None)
        with autocast(self.device):
            z, c, _ = self.backbone(v.query)  # (B, T, C), (B, T, D): one online forward for all
            if self.apc is not None:
                losses["apc"] = self.apc(c.float(), v.apc_target)
            if self.cpc is not None:
                target = z
                if v.clean is not None and self.cfg.objectives.cpc_target == "clean":
                    with torch.no_grad():
                        target, _ = self.backbone.encoder(v.clean)
                losses["cpc"] = self.cpc(c.float(), target.float(), g)
            if self.weights["decorrelation"] > 0:
                losses["decorrelation"] = decorrelation_loss(z) + decorrelation_loss(c)
            if self.moco is not None:
                q = self.moco.query(self.projection, c)  # (B, P)
                keys = self.moco.keys(v.key)  # (B, P), no grad
                if in_batch_moco:
                    losses["moco"] = self.moco.in_batch_loss(q, keys)
                else:
                    losses["moco"] = self.moco.loss(q, keys, stream, time_ns, v.pair_valid)
        return losses, keys

    def step(self, audio: torch.Tensor, stream: torch.Tensor, time_ns: torch.Tensor, new: int) -> StepResult:
        """One optimizer step on examples (B, S); the first ``new`` rows are new audio (the rest replay).

        The normaliser folds in the new rows' frames before anything is normalised (right
        from the first window); it is rolled back with everything else if the step is skipped.
        Only new rows' keys enter the MoCo queue: replayed ones are already there.

        In a learner group (``self.group``, ``streamssl.learning.distributed``) every rank
        calls this together: the normaliser takes the group's moments, the gradient is the
        group's example-weighted mean, MoCo's queue receives every rank's new keys, and a
        rank may come with no examples at all (B = 0) to take its part in the reductions.
        """
        group = self.group
        saved_norm = {k: v.clone() for k, v in self.normaliser.state_dict().items()}
        with torch.no_grad():  # the window part of the new examples (the key segment was seen before)
            frames = self.logmel(audio[:new, -self.window_samples:])
            if group is None:
                self.normaliser.update(frames)
            else:
                mean, var, count = group.reduce_moments(frames)
                if count:
                    self.normaliser.update_moments(mean, var, count)
        losses, keys = self.losses(audio, stream, time_ns) if audio.shape[0] else ({}, None)
        total = sum(self.weights[k] * v for k, v in losses.items())
        self.optimizer.zero_grad(set_to_none=True)
        has_grad = torch.is_tensor(total) and total.requires_grad
        if has_grad:
            # Backward runs before the loss is read: the one host sync of the step (below)
            # then reads losses and gradient norm together. A non-finite loss gives
            # non-finite gradients, and the step is skipped on either.
            total.backward()
        else:  # nothing to differentiate yet (MoCo alone, its queue still empty): a step without gradient
            total = torch.as_tensor(total, dtype=torch.float32, device=self.device)
        group_bad = False
        if group is not None:
            group_bad, _ = group.reduce_gradients(self.parameters(), int(audio.shape[0]),
                                                  bad=not bool(torch.isfinite(total.detach()).item()))
            has_grad = True  # every rank now holds the group's gradient
        if has_grad:
            grad = torch.nn.utils.clip_grad_norm_(self.parameters(), self.cfg.learner.grad_clip)
        else:
            grad = torch.zeros((), device=self.device)
        names = list(losses)
        read = torch.stack([total.detach().float(), grad.float(), *(losses[k].detach().float() for k in names)]).tolist()
        values = dict(zip(names, read[2:])) | {"total": read[0]}
        grad_norm = read[1]
        # In a group the decision is the group's (the same gradient and flag on every rank):
        # one rank's empty batch has no loss of its own to judge.
        if group is not None:
            skipped = group_bad or not np.isfinite(grad_norm)
        else:
            skipped = not (np.isfinite(values["total"]) and np.isfinite(grad_norm))
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
            self.normaliser.load_state_dict(saved_norm)
            self.skipped_steps += 1
            return StepResult(values, grad_norm, True)
        self.optimizer.step()
        self.step_count += 1
        if self.moco is not None:
            self.moco.momentum_update(self.backbone, self.projection)
            mine = keys[:new] if keys is not None else torch.zeros(0, self.moco.queue.shape[1], device=self.device)
            k, s_, t_ = mine, stream[:new], time_ns[:new]
            if group is not None:
                k, s_, t_ = group.gather_keys(mine, s_, t_)
            self.moco.dequeue_and_enqueue(k, s_, t_)
        return StepResult(values, grad_norm, False, keys[:new] if keys is not None else None)

    @torch.no_grad()
    def evaluate(self, audio: torch.Tensor, seed: int = 0) -> dict[str, float]:
        """Each enabled loss on fixed clips (n, S), changing no state (MoCo: in-batch negatives)."""
        own = self.generator
        self.generator = torch.Generator().manual_seed(seed)
        try:
            zeros = torch.zeros(audio.shape[0], dtype=torch.long, device=self.device)
            losses, _ = self.losses(audio, zeros, zeros, in_batch_moco=True)
        finally:
            self.generator = own
        return {k: float(v) for k, v in losses.items()}

    # --- state --------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "step": self.step_count,
            "skipped_steps": self.skipped_steps,
            "modules": {name: mod.state_dict() for name, mod in self.modules().items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, sd: dict) -> None:
        for name, mod in self.modules().items():
            if name not in sd["modules"]:
                raise ValueError(f"state has no {name!r} module (objectives differ from the config?)")
            mod.load_state_dict(sd["modules"][name])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.generator.set_state(sd["generator"])
        self.step_count = int(sd["step"])
        self.skipped_steps = int(sd.get("skipped_steps", 0))

