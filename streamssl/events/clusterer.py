"""Online clusters of sound on the embedding stream: which kind of sound each window is, and when
something never heard before starts.

Per window, in order:

1. **Smoothing** (off by default). Each stream's embedding can be averaged over its recent
   windows (weight ``events.smoothing`` on the newest, 1 = none). It helped pooled log-mel
   a little and cost the trained embeddings, whose context network already carries the
   past, so the default is none (``bench/RESULTS.md``).
2. **Space.** Standardised per dimension and projected on the leading
   ``events.components`` principal components, from exponentially weighted statistics
   (half-life ``events.scale_halflife`` windows, so the space follows the model as it
   trains); re-computed every ``events.basis_every`` windows and rotated onto the previous
   components (orthogonal Procrustes), so a re-computation does not move the points;
   divided by the points' RMS norm, so ``events.radius`` is relative. Measured on the scene
   of ``bench/events.py``: clusters in 8 components agree with the segment kinds far better
   than in a 32-dimensional random projection of all dimensions, where distances
   concentrate (``bench/RESULTS.md``).
3. **Clusters.** Sequential leader clustering with running-mean centres and fading
   weights: a window joins the nearest cluster within ``events.radius`` (the centre moves
   to the running mean of its windows) or opens a new one. A cluster is *established* once
   its weight reaches ``events.min_weight``; weights fade by ``events.fading`` per window
   and a cluster unheard until its weight falls below ``FORGET_WEIGHT`` is forgotten. Two
   centres that come closer than ``radius`` (split while the space was young, or brought
   together by drift) merge, the heavier keeping its id. Ids are never reused or renamed:
   a cluster is the same name as long as it lives. river's ``DBSTREAM`` (the same
   micro-clusters, with centres that jump to each new point, joined by shared density and
   renumbered at every re-clustering) was measured on the same scene and space and agreed
   less with the kinds: ARI 0.37 against 0.71 on the trained embeddings of that time
   (``bench/RESULTS.md``; the decorrelated embeddings of today's defaults cluster worse
   in this space, 0.44-0.55: a known gap, measured there).
4. **Novelty.** A window is *far* when it opens a cluster or joins one that is not yet
   established (no established centre is nearer, none within ``radius``), or when it lies
   off the components: its energy outside them is more than
   ``events.residual_limit`` times their typical residual (in RMS norm). The second test
   is what catches a sound unlike anything heard so far: the components span the sounds
   already heard, so a new one differs mostly in directions they do not contain, and its
   projection can land near a familiar cluster (PCA novelty detection by reconstruction
   error, the Q statistic of Jackson & Mudholkar 1979). A far window is often a
   transition between two sounds and opens a cluster that nothing else joins; a new sound
   is self-similar and builds one. So ``events.novelty_windows`` consecutive far windows
   of one stream *in one cluster* are a novelty event, flagged on the window that
   completes the run. Nothing is novel during the first ``events.warmup_windows``
   windows: a listener has to have heard a place before anything in it can be new.

Model changes: the learner's weights move, so the embeddings of one sound drift. The
standardisation, the components and the running-mean centres all follow it, so slow
drift keeps cluster ids (``tests/test_events.py`` drifts a scene by several radii). An
embedding of another size, or a model step lower than one seen before (another or a
reset model), cannot be compared with what was learned: ``observe`` raises
``ModelChanged`` and the service starts over, counted and logged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamssl.config import EventsConfig

FORGET_WEIGHT = 0.5  # a cluster below this weight is forgotten (one window's weight, halved)


@dataclass(frozen=True)
class Assignment:
    """What the clusterer says about one window."""

    cluster: int  # stable id; -1 before the first components exist
    distance: float  # to that cluster's centre before this window joined it (unit: RMS norm of a point)
    novel: bool  # completes a run of ``novelty_windows`` far windows after the warm-up
    far: bool  # opened or joined a cluster not yet established, or lies off the components
    established: bool  # this window made its cluster established (a new kind of sound)


class Space:
    """Standardised principal components of the (smoothed) embeddings, scaled to RMS norm 1."""

    def __init__(self, cfg: EventsConfig, dim: int):
        if cfg.components > dim:
            raise ValueError(f"events.components = {cfg.components} exceeds the embedding dim {dim}")
        self.cfg = cfg
        self.alpha = 1.0 - 0.5 ** (1.0 / cfg.scale_halflife)
        self.mean = np.zeros(dim)
        self.cov = np.zeros((dim, dim))
        self.seen = 0
        self.basis: np.ndarray | None = None  # (dim, components), columns orthonormal
        self.mean_sq = 1.0  # EW mean of the projected points' squared norm
        self.residual_sq = 1.0  # EW mean of the squared norm left outside the components
        self.last_residual = 0.0  # the last point's residual norm, in RMS units of the residual

    def add(self, e: np.ndarray) -> np.ndarray | None:
        """Learn from ``e``, return its coordinates (None until the first components exist)."""
        a = 1.0 / (self.seen + 1) if self.seen < 1 / self.alpha else self.alpha  # plain mean while young
        delta = e - self.mean
        self.mean += a * delta
        self.cov = (1 - a) * (self.cov + a * np.outer(delta, delta))
        self.seen += 1
        if self.seen % self.cfg.basis_every == 0:
            self._refresh()
        if self.basis is None:
            return None
        z = (e - self.mean) / self._std()
        y = self.basis.T @ z
        residual = float(z @ z - y @ y)  # energy outside the components
        self.mean_sq += a * (float(y @ y) - self.mean_sq)
        self.residual_sq += a * (residual - self.residual_sq)
        self.last_residual = float(np.sqrt(max(residual, 0.0) / max(self.residual_sq, 1e-12)))
        return y / np.sqrt(max(self.mean_sq, 1e-12))

    def _std(self) -> np.ndarray:
        return np.sqrt(np.maximum(np.diag(self.cov), 1e-12))

    def _refresh(self) -> None:
        std = self._std()
        corr = self.cov / np.outer(std, std)
        _, vectors = np.linalg.eigh(corr)  # ascending
        basis = vectors[:, ::-1][:, : self.cfg.components]
        if self.basis is not None:  # orthogonal Procrustes: rotate onto the previous components
            u, _, vt = np.linalg.svd(basis.T @ self.basis)
            basis = basis @ (u @ vt)
        self.basis = basis

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "cov": self.cov.tolist(), "seen": self.seen, "mean_sq": self.mean_sq,
                "residual_sq": self.residual_sq, "basis": None if self.basis is None else self.basis.tolist()}

    def load_state_dict(self, sd: dict) -> None:
        self.mean, self.cov, self.seen = np.array(sd["mean"]), np.array(sd["cov"]), int(sd["seen"])
        self.mean_sq, self.residual_sq = float(sd["mean_sq"]), float(sd["residual_sq"])
        self.basis = None if sd["basis"] is None else np.array(sd["basis"])


class EventClusterer:
    """Online clusters and novelty over the embeddings of one model (module docstring)."""

    def __init__(self, cfg: EventsConfig, dim: int):
        self.cfg = cfg
        self.dim = dim
        self.space = Space(cfg, dim)
        self.ids: list[int] = []
        self.centres = np.zeros((0, cfg.components))
        self.weights = np.zeros(0)
        self.next_id = 0
        self.windows = 0
        self.last_step = -1
        self.smoothed: dict[str, tuple[int, np.ndarray]] = {}  # stream -> (session, running embedding)
        self.far_run: dict[str, tuple[int, int]] = {}  # stream -> (cluster of its far run, run length)

    def observe(self, stream_id: str, embedding: np.ndarray, model_step: int, session: int = 0) -> Assignment:
        e = np.asarray(embedding, dtype=np.float64).reshape(-1)
        if e.shape[0] != self.dim or model_step < self.last_step:
            raise ModelChanged(f"an embedding of dim {e.shape[0]} at model step {model_step}, after dim {self.dim} "
                               f"at step {self.last_step}: another model")
        self.last_step = model_step
        self.windows += 1
        held = self.smoothed.get(stream_id)
        s = e if held is None or held[0] != session else (1 - self.cfg.smoothing) * held[1] + self.cfg.smoothing * e
        self.smoothed[stream_id] = (session, s)
        y = self.space.add(s)
        if y is None:
            return Assignment(-1, float("nan"), False, False, False)
        cluster, distance, far, established = self._assign(y)
        far = far or self.space.last_residual > self.cfg.residual_limit
        last_cluster, run = self.far_run.get(stream_id, (-1, 0))
        run = (run + 1 if cluster == last_cluster else 1) if far else 0
        self.far_run[stream_id] = (cluster, run)
        warm = self.windows > self.cfg.warmup_windows
        return Assignment(int(cluster), float(distance), bool(warm and run == self.cfg.novelty_windows), bool(far),
                          bool(established))

    def _assign(self, y: np.ndarray) -> tuple[int, float, bool, bool]:
        c = self.cfg
        self.weights *= 1.0 - c.fading
        self._forget()
        d = np.linalg.norm(self.centres - y, axis=1) if self.ids else np.zeros(0)
        k = int(np.argmin(d)) if d.size else -1
        if k < 0 or d[k] > c.radius:
            self.ids.append(self.next_id)
            self.next_id += 1
            self.centres = np.vstack([self.centres, y])
            self.weights = np.append(self.weights, 1.0)
            return self.ids[-1], float("nan") if k < 0 else float(d[k]), True, c.min_weight <= 1.0
        was = self.weights[k] >= c.min_weight
        far = not was  # joined a cluster still being formed: nothing established is nearer
        self.weights[k] += 1.0
        self.centres[k] += (y - self.centres[k]) / self.weights[k]
        cluster = self.ids[k]
        established = not was and self.weights[k] >= c.min_weight
        self._merge_into_neighbour(k)
        return cluster, float(d[k]), far, established

    def _merge_into_neighbour(self, k: int) -> None:
        """Two centres closer than ``radius`` are one kind of sound (split early, when the space
        was young, or brought together by drift): the lighter joins the heavier, which keeps its id."""
        d = np.linalg.norm(self.centres - self.centres[k], axis=1)
        d[k] = np.inf
        j = int(np.argmin(d))
        if d[j] >= self.cfg.radius:
            return
        keep, drop = (k, j) if self.weights[k] >= self.weights[j] else (j, k)
        w = self.weights[keep] + self.weights[drop]
        self.centres[keep] = (self.weights[keep] * self.centres[keep] + self.weights[drop] * self.centres[drop]) / w
        self.weights[keep] = w
        del self.ids[drop]
        self.centres = np.delete(self.centres, drop, axis=0)
        self.weights = np.delete(self.weights, drop)

    def _forget(self) -> None:
        keep = self.weights >= FORGET_WEIGHT
        if len(self.ids) >= self.cfg.max_clusters:  # make room: drop the lightest
            keep[int(np.argmin(self.weights))] = False
        if not keep.all():
            self.ids = [i for i, k in zip(self.ids, keep) if k]
            self.centres, self.weights = self.centres[keep], self.weights[keep]

    @property
    def clusters_alive(self) -> int:
        """Established clusters."""
        return int(np.sum(self.weights >= self.cfg.min_weight))

    # --- state --------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Plain numbers and lists (JSON-serialisable)."""
        return {
            "dim": self.dim,
            "space": self.space.state_dict(),
            "ids": list(self.ids), "centres": self.centres.tolist(), "weights": self.weights.tolist(),
            "next_id": self.next_id,
            "windows": self.windows,
            "last_step": self.last_step,
            "smoothed": {sid: [sess, v.tolist()] for sid, (sess, v) in self.smoothed.items()},
            "far_run": {sid: list(v) for sid, v in self.far_run.items()},
        }

    def load_state_dict(self, sd: dict) -> None:
        if int(sd["dim"]) != self.dim:
            raise ValueError(f"saved clusterer is for embeddings of dim {sd['dim']}, this one for {self.dim}")
        self.space.load_state_dict(sd["space"])
        self.ids = [int(i) for i in sd["ids"]]
        self.centres = np.array(sd["centres"], dtype=np.float64).reshape(len(self.ids), self.cfg.components)
        self.weights = np.array(sd["weights"], dtype=np.float64)
        self.next_id = int(sd["next_id"])
        self.windows = int(sd["windows"])
        self.last_step = int(sd["last_step"])
        self.smoothed = {sid: (int(v[0]), np.array(v[1])) for sid, v in sd["smoothed"].items()}
        self.far_run = {sid: (int(v[0]), int(v[1])) for sid, v in sd["far_run"].items()}


class ModelChanged(ValueError):
    """The embeddings come from another model than the one the clusters were learned on."""
