"""Write monitoring/grafana/dashboards/streamssl.json from the panel list below.

The dashboard is data: rows of panels, each a title, a unit and PromQL targets. This
script expands them into Grafana's JSON model (schemaVersion 39; Grafana 10.4+) with
the layout computed, so the committed JSON never drifts from one readable source.
It needs nothing beyond the standard library (grafana-foundation-sdk was considered:
it would pin a pre-release package for what is a list of dicts here).

    python monitoring/grafana/generate.py          # rewrite the JSON
    python monitoring/grafana/generate.py --check  # exit 1 if the JSON is out of date

``tests/test_monitoring.py`` runs the check, checks every metric of
``streamssl/observability/metrics.py`` is on a panel, and ``tests/test_prometheus_e2e.py`` runs every
expression against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards" / "streamssl.json"
DATASOURCE = {"type": "prometheus", "uid": "streamssl-prometheus"}  # provisioning/datasources/prometheus.yaml
RI = "$__rate_interval"


def t(expr: str, legend: str = "") -> dict:
    return {"expr": expr, "legendFormat": legend}


def q(phi: float, metric: str, legend: str) -> dict:
    return t(f"histogram_quantile({phi}, sum by (le) (rate({metric}_bucket[{RI}])))", legend)


# (row title, [(panel title, unit, kind, description, [targets])])
ROWS: list[tuple[str, list[tuple[str, str, str, str, list[dict]]]]] = [
    ("Throughput and latency", [
        ("Audio in (seconds of audio per second)", "s", "timeseries",
         "Read by each capture vs received by the learner; the gap is audio lost on the way.", [
             t(f"sum by (stream) (rate(streamssl_capture_audio_seconds_total[{RI}]))", "captured {{stream}}"),
             t(f"sum by (stream) (rate(streamssl_learner_audio_seconds_total[{RI}]))", "received {{stream}}"),
         ]),
        ("Windows per second", "ops", "timeseries", "Sent by captures, received and embedded by the learner.", [
            t(f"sum by (stream) (rate(streamssl_capture_windows_sent_total[{RI}]))", "sent {{stream}}"),
            t(f"sum by (stream) (rate(streamssl_learner_windows_received_total[{RI}]))", "received {{stream}}"),
            t(f"sum by (stream) (rate(streamssl_learner_embeddings_published_total[{RI}]))", "published {{stream}}"),
        ]),
        ("Learner group: windows per second by rank", "ops", "timeseries",
         "A learner group (torchrun) labels every sample with its rank: received per rank and for the group. "
         "One process without a group shows as one line without a rank.", [
             t(f"sum by (rank) (rate(streamssl_learner_windows_received_total[{RI}]))", "rank {{rank}}"),
             t(f"sum(rate(streamssl_learner_windows_received_total[{RI}]))", "total"),
             t(f"sum by (rank) (rate(streamssl_learner_updates_total[{RI}]))", "steps/s rank {{rank}}"),
         ]),
        ("Real-time factor", "x", "timeseries",
         "Audio seconds learned per busy second over the last minute; below 1 the learner falls behind.", [
             t("streamssl_learner_realtime_factor", "{{instance}}"),
         ]),
        ("Embedding latency (capture to publish)", "s", "timeseries",
         "From a window's last captured sample to its embedding leaving the learner.", [
             q(0.5, "streamssl_learner_embedding_latency_seconds", "p50"),
             q(0.95, "streamssl_learner_embedding_latency_seconds", "p95"),
             q(0.99, "streamssl_learner_embedding_latency_seconds", "p99"),
         ]),
        ("Update step duration", "s", "timeseries", "Wall time of one optimizer step (forward, backward, update).", [
            q(0.5, "streamssl_learner_update_duration_seconds", "p50"),
            q(0.95, "streamssl_learner_update_duration_seconds", "p95"),
            t(f"sum(rate(streamssl_learner_update_duration_seconds_sum[{RI}])) "
              f"/ sum(rate(streamssl_learner_update_duration_seconds_count[{RI}]))", "mean"),
        ]),
        ("Batch size (windows per update)", "none", "timeseries", "New plus replayed windows per step.", [
            q(0.5, "streamssl_learner_batch_windows", "p50"),
            t(f"sum(rate(streamssl_learner_batch_windows_sum[{RI}])) "
              f"/ sum(rate(streamssl_learner_batch_windows_count[{RI}]))", "mean"),
        ]),
        ("Updates per second and model step", "ops", "timeseries",
         "Optimizer steps taken, and those of them on replayed examples alone (idle time); step of the published model.", [
            t(f"rate(streamssl_learner_updates_total[{RI}])", "updates/s {{instance}}"),
            t(f"rate(streamssl_learner_replay_updates_total[{RI}])", "replay-only updates/s {{instance}}"),
            t("streamssl_learner_model_step", "model step {{instance}}"),
        ]),
        ("Learner backlog", "none", "timeseries", "Windows waiting for the learner; at learner.max_backlog it sheds.", [
            t("streamssl_learner_backlog_windows", "{{instance}}"),
        ]),
        ("Streams held and evicted", "none", "timeseries",
         "Streams whose state the learner holds (cap: learner.max_streams) and evictions per second by reason.", [
             t("streamssl_learner_active_streams", "held {{instance}}"),
             t(f"rate(streamssl_learner_streams_evicted_total[{RI}])", "evicted/s {{reason}}"),
         ]),
    ]),
    ("Losses and learning", [
        ("Loss by objective", "none", "timeseries", "Last loss per objective (APC, CPC, MoCo, decorrelation) and their weighted total.", [
            t("streamssl_learner_loss", "{{objective}}"),
        ]),
        ("Learning rate", "none", "timeseries", "", [t("streamssl_learner_learning_rate", "{{instance}}")]),
        ("Gradient norm (before clipping)", "none", "timeseries", "", [t("streamssl_learner_grad_norm", "{{instance}}")]),
        ("MoCo queue fill", "percentunit", "timeseries", "Negatives available to MoCo, 0..1.", [
            t("streamssl_learner_moco_queue_fill_ratio", "{{instance}}"),
        ]),
        ("Non-finite steps skipped", "ops", "timeseries", "Steps whose loss was NaN/Inf; the model was not updated.", [
            t(f"rate(streamssl_learner_nonfinite_steps_total[{RI}])", "{{instance}}"),
        ]),
    ]),
    ("Drift and collapse", [
        ("Probe CKA", "none", "timeseries",
         "Linear CKA of the probe set's embeddings vs the previous check and vs the first one; 1 = same geometry.", [
             t("streamssl_learner_probe_cka", "vs {{reference}}"),
         ]),
        ("Embedding spread (collapse)", "none", "timeseries",
         "Mean per-dimension std of L2-normalised recent embeddings x sqrt(dim); ~1 when spread evenly, near 0 = collapse.", [
             t("streamssl_learner_embedding_spread", "{{instance}}"),
         ]),
        ("Embedding effective rank (dimensional collapse)", "none", "timeseries",
         "RankMe effective rank of recent embeddings: how many directions their variance uses. Falls towards 1 "
         "when the model maps every input onto one line, which the spread panel cannot show.", [
             t("streamssl_learner_embedding_effective_rank", "{{instance}}"),
         ]),
        ("Drift detections", "none", "timeseries", "River ADWIN / Page-Hinkley detections by signal and detector.", [
            t(f"sum by (signal, detector) (increase(streamssl_learner_drift_detections_total[{RI}]))",
              "{{signal}} {{detector}}"),
        ]),
        ("Drift signals (z-scores)", "none", "timeseries",
         "Values fed to the detectors, in standard deviations of their warm-up.", [
             t("streamssl_learner_drift_signal", "{{signal}}"),
         ]),
    ]),
    ("Capture and intake health", [
        ("Targets and sources up", "none", "timeseries", "Prometheus reaching each daemon; each capture's source producing audio.", [
            t('up{job=~"streamssl-.*"}', "{{job}} {{instance}}"),
            t("streamssl_capture_up", "source {{stream}}"),
        ]),
        ("Audio lost (windows per second)", "ops", "timeseries",
         "Dropped by captures (queue_full / hwm), shed by the learner, device overflows.", [
             t(f"sum by (stream, reason) (rate(streamssl_capture_windows_dropped_total[{RI}]))",
               "dropped {{stream}} {{reason}}"),
             t(f"sum by (stream) (rate(streamssl_learner_windows_shed_total[{RI}]))", "shed {{stream}}"),
             t(f"sum by (stream) (rate(streamssl_learner_windows_untrained_total[{RI}]))", "served, not learned {{stream}}"),
             t(f"sum by (stream) (rate(streamssl_capture_input_overflows_total[{RI}]))", "overflows {{stream}}"),
             t(f"sum by (stream) (rate(streamssl_capture_source_gap_seconds_total[{RI}]))",
               "source away (s/s) {{stream}}"),
         ]),
        ("Capture queue", "none", "timeseries", "Windows between the source and the socket.", [
            t("streamssl_capture_queue_windows", "{{stream}}"),
        ]),
        ("Bytes sent", "Bps", "timeseries", "", [
            t(f"sum by (stream) (rate(streamssl_capture_sent_bytes_total[{RI}]))", "{{stream}}"),
        ]),
        ("Rejected messages by reason", "ops", "timeseries",
         "Malformed, stale or oversized messages the learner refused; disconnects include senders libzmq cut off"
         " for a message beyond 4x transport.max_message_bytes.", [
            t(f"sum by (reason) (rate(streamssl_learner_messages_rejected_total[{RI}]))", "{{reason}}"),
            t(f"rate(streamssl_learner_audio_disconnects_total[{RI}])", "audio disconnects"),
        ]),
        ("Sequence gaps and sessions", "none", "timeseries",
         "Gaps in a stream's seq, windows missing inside them, capture (re)starts.", [
             t(f"sum by (stream) (increase(streamssl_learner_sequence_gaps_total[{RI}]))", "gaps {{stream}}"),
             t(f"sum by (stream) (increase(streamssl_learner_missing_windows_total[{RI}]))", "missing {{stream}}"),
             t(f"sum by (stream) (increase(streamssl_learner_stream_sessions_total[{RI}]))", "sessions {{stream}}"),
         ]),
        ("Source errors", "none", "timeseries", "Source failures (the capture retries or ends).", [
            t(f"sum by (stream) (increase(streamssl_capture_source_errors_total[{RI}]))", "{{stream}}"),
        ]),
        ("Captures", "none", "table", "Build and source of each capture.", [t("streamssl_capture_info", "")]),
    ]),
    ("Process and checkpoints", [
        ("Checkpoint age", "s", "timeseries", "Since the last good checkpoint (none yet: no series).", [
            t("time() - streamssl_learner_last_checkpoint_timestamp_seconds "
              "unless streamssl_learner_last_checkpoint_timestamp_seconds == 0", "{{instance}}"),
        ]),
        ("Checkpoint errors", "none", "timeseries", "Failed writes (the previous checkpoint is kept).", [
            t(f"increase(streamssl_learner_checkpoint_errors_total[{RI}])", "{{instance}}"),
        ]),
        ("Memory", "bytes", "timeseries", "Resident memory of the learner; accelerator memory (0 on CPU).", [
            t("streamssl_learner_memory_bytes", "resident {{instance}}"),
            t("streamssl_learner_device_memory_bytes", "device {{instance}}"),
        ]),
        ("Learners", "none", "table", "Version, model and device of each learner.", [t("streamssl_learner_info", "")]),
    ]),
    ("Sound events (streamssl events)", [
        ("Kinds of sound (established clusters)", "none", "timeseries",
         "Clusters the events service holds now. A slow rise is a place being learned; a drop after a model "
         "change is a start-over (see resets).", [
            t("streamssl_events_clusters_alive", "{{instance}}"),
        ]),
        ("New kinds of sound per minute", "none", "timeseries",
         "Clusters that became established, per minute. Near 0 once the place has been heard.", [
            t(f"60 * rate(streamssl_events_new_clusters_total[{RI}])", "{{instance}}"),
        ]),
        ("Novelty events per 5 minutes", "none", "timeseries",
         "Runs of windows unlike anything heard, per stream. A quiet place gives at most ~1 per 5 minutes; "
         "StreamsslNoveltyBurst fires above 3.", [
            t("sum by (stream) (increase(streamssl_events_novel_total[5m]))", "{{stream}}"),
        ]),
        ("Windows clustered per second", "none", "timeseries",
         "Embeddings the events service took in, per stream; compare with embeddings published.", [
            t(f"sum by (stream) (rate(streamssl_events_windows_total[{RI}]))", "{{stream}}"),
        ]),
        ("Events health", "none", "timeseries",
         "Start-overs (embeddings of another model), malformed messages, windows missed by the subscription, "
         "failed checkpoints and event lines (all should stay 0).", [
            t(f"increase(streamssl_events_resets_total[{RI}])", "resets {{instance}}"),
            t(f"increase(streamssl_events_messages_rejected_total[{RI}])", "rejected {{instance}}"),
            t(f"increase(streamssl_events_gap_windows_total[{RI}])", "missed {{instance}}"),
            t(f"increase(streamssl_events_checkpoint_errors_total[{RI}])", "checkpoint errors {{instance}}"),
            t(f"increase(streamssl_events_write_errors_total[{RI}])", "write errors {{instance}}"),
        ]),
        ("Model step seen by events", "none", "timeseries", "Step of the model behind the last clustered window.", [
            t("streamssl_events_model_step", "{{instance}}"),
        ]),
    ]),
]


# Alert thresholds drawn on their panels (same numbers as prometheus/rules/streamssl.rules.yml;
# tests/test_monitoring.py checks they agree): (base colour, threshold, colour beyond it).
THRESHOLDS = {
    "Embedding spread (collapse)": ("red", 0.05, "green"),  # StreamsslCollapse floor
    "Embedding effective rank (dimensional collapse)": ("red", 2, "green"),  # StreamsslDimensionalCollapse
    "Real-time factor": ("red", 1, "green"),  # StreamsslLearnerBehindRealtime
    "Checkpoint age": ("green", 1800, "red"),  # StreamsslCheckpointStale
    "Novelty events per 5 minutes": ("green", 3, "red"),  # StreamsslNoveltyBurst
}


def panel(pid: int, title: str, unit: str, kind: str, description: str, targets: list[dict], pos: dict) -> dict:
    out = {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": pos,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, **tgt,
             **({"format": "table", "instant": True} if kind == "table" else {})}
            for i, tgt in enumerate(targets)
        ],
    }
    if title in THRESHOLDS:
        below, value, above = THRESHOLDS[title]
        out["fieldConfig"]["defaults"]["thresholds"] = {
            "mode": "absolute", "steps": [{"color": below, "value": None}, {"color": above, "value": value}]}
        out["fieldConfig"]["defaults"]["custom"] = {"thresholdsStyle": {"mode": "line"}}
    if kind == "timeseries":
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    return out


def build() -> dict:
    panels, pid, y = [], 1, 0
    for row_title, row_panels in ROWS:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, (title, unit, kind, desc, targets) in enumerate(row_panels):
            pos = {"h": 8, "w": 8, "x": 8 * (i % 3), "y": y + 8 * (i // 3)}
            panels.append(panel(pid, title, unit, kind, desc, targets, pos))
            pid += 1
        y += 8 * -(-len(row_panels) // 3)
    return {
        "uid": "streamssl",
        "title": "streamssl",
        "description": "Online self-supervised audio learner: throughput, losses, drift, capture health.",
        "tags": ["streamssl"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if the committed JSON differs from the generated one")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python monitoring/grafana/generate.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
