"""No blank panel, no blind alert: every dashboard and rule query returns data from a real
Prometheus scraping a real learner fed by a real capture.

A Debian ``prometheus`` (2.42) is started on a free loopback port with a 1 s scrape and
rule-evaluation interval, loading the repository's rules file; ``streamssl learn``
(small model), ``streamssl capture --source speech`` and ``streamssl events`` run as
separate processes. Once
audio flows and a checkpoint exists, each query goes through ``/api/v1/query``:

- dashboard targets as written, with ``$__rate_interval`` replaced by ``30s``;
- each recording rule's expression *and* the series it records;
- each alert's expression with every comparison given the ``bool`` modifier, so a
  healthy system returns 0-valued series instead of the empty set a silent alert
  gives — the query proves every metric it watches exists, with the labels it joins on.

Rule expressions are taken from Prometheus's own parse (``/api/v1/rules``), not from
our reading of the YAML. Prometheus missing is a failure, not a skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import zmq

from streamssl.procs import terminate
from support import REPO, free_endpoint, free_port, log_tail, metric, scrape, start_streamssl, stop, wait_until

pytestmark = pytest.mark.e2e

RULES = REPO / "monitoring" / "prometheus" / "rules" / "streamssl.rules.yml"
DASHBOARD = REPO / "monitoring" / "grafana" / "dashboards" / "streamssl.json"
SMALL = REPO / "tests" / "configs" / "small.toml"
RATE_INTERVAL = "30s"


def api(port: int, path: str, **params: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


def query(port: int, expr: str) -> list:
    return api(port, "query", query=expr)["result"]


def with_bool(expr: str) -> str:
    """``expr`` with ``bool`` after every comparison operator outside label matchers and strings."""
    out, depth, quote, i = [], 0, "", 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            out.append(ch)
            if ch == "\\":
                out.append(expr[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
            out.append(ch)
        elif ch in "{[":
            depth += 1
            out.append(ch)
        elif ch in "}]":
            depth -= 1
            out.append(ch)
        elif depth == 0 and (m := re.match(r"==|!=|>=|<=|>|<", expr[i:])):
            op = m.group(0)
            out.append(op)
            i += len(op)
            if not re.match(r"\s*bool\b", expr[i:]):
                out.append(" bool ")
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def test_with_bool_leaves_matchers_alone():
    assert with_bool('up{job!="a", x=~"b"} == 0 and rate(y[5m]) > bool 1 or z<=2') == \
        'up{job!="a", x=~"b"} == bool  0 and rate(y[5m]) > bool 1 or z<= bool 2'


@pytest.fixture
def stack(tmp_path):
    """Prometheus + learner + speech capture on free loopback ports; yields the Prometheus port."""
    prom_bin = shutil.which("prometheus")
    assert prom_bin, "prometheus not found: install the Debian package 'prometheus' (make system)"
    learner_port, capture_port, events_port, prom_port = free_port(), free_port(), free_port(), free_port()
    audio, embeddings = free_endpoint(), free_endpoint()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {RULES}\n"
        "scrape_configs:\n"
        f"  - job_name: streamssl-learner\n    static_configs:\n      - targets: ['127.0.0.1:{learner_port}']\n"
        f"  - job_name: streamssl-capture\n    static_configs:\n      - targets: ['127.0.0.1:{capture_port}']\n"
        f"  - job_name: streamssl-events\n    static_configs:\n      - targets: ['127.0.0.1:{events_port}']\n"
    )
    prom_log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(
        [prom_bin, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=prom_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    procs = []
    bad = None
    try:
        wait_until(lambda: api(prom_port, "status/buildinfo"), 30, 0.1, "prometheus ready")
        procs.append(start_streamssl(
            "learn", "--config", str(SMALL), "--audio-bind", audio, "--embeddings-bind", embeddings,
            "--metrics-port", str(learner_port), "--checkpoint-dir", str(tmp_path / "ckpt"),
            "--checkpoint-interval", "2", "--device", "cpu", "--set", "model.encoder_channels=64",
            log_path=tmp_path / "learner.log",
        ))
        procs.append(start_streamssl(
            "capture", "--source", "speech", "--stream-id", "e2e", "--connect", audio,
            "--metrics-port", str(capture_port), log_path=tmp_path / "capture.log",
        ))
        procs.append(start_streamssl(
            "events", embeddings, "--config", str(SMALL), "--metrics-port", str(events_port),
            "--out", str(tmp_path / "events.jsonl"), log_path=tmp_path / "events.log",
        ))
        # A malformed message (one frame, no header) so the rejection series move too.
        ctx = zmq.Context.instance()
        bad = ctx.socket(zmq.PUSH)
        bad.setsockopt(zmq.LINGER, 1000)
        bad.connect(audio)
        bad.send(b"not an audio window")
        # Data flows: steps taken and a checkpoint written. Deadlines are generous because CI
        # machines run other suites beside this one; nothing here measures speed.
        wait_until(lambda: metric(scrape(learner_port), "streamssl_learner_updates_total") >= 2, 180, 0.5,
                   "learner updates")
        wait_until(lambda: metric(scrape(learner_port), "streamssl_learner_last_checkpoint_timestamp_seconds") > 0,
                   120, 0.5, "first checkpoint")
        wait_until(lambda: metric(scrape(events_port), "streamssl_events_windows_total") >= 1, 60, 0.5,
                   "events clustering")
        yield prom_port
    finally:
        if bad is not None:
            bad.close()
        for p in reversed(procs):
            if stop(p) != 0:
                print(log_tail(p))
        terminate(prom, timeout=15)
        prom_log.close()


def test_every_dashboard_and_rule_query_returns_data_from_a_real_prometheus(stack):
    port = stack
    groups = api(port, "rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert rules, "Prometheus loaded no rules"
    dash = json.loads(DASHBOARD.read_text())
    queries: list[tuple[str, str]] = [
        (f"panel {p['title']!r}", t["expr"].replace("$__rate_interval", RATE_INTERVAL))
        for p in dash["panels"] for t in p.get("targets", [])
    ]
    for r in rules:
        if r["type"] == "recording":
            queries += [(f"record {r['name']}", r["query"]), (f"recorded series {r['name']}", r["name"])]
        else:
            queries.append((f"alert {r['name']}", with_bool(r["query"])))

    # Rates over 30 s, 1 m and 5 m windows need a few scrapes; recorded series need a rule
    # evaluation. Poll until every query answers, then report every one that never did.
    # Keyed by position: a panel with several targets has one title for all of them.
    pending = dict(enumerate(queries))
    deadline = time.monotonic() + 90
    while pending and time.monotonic() < deadline:
        for i, (_, expr) in list(pending.items()):
            if query(port, expr):
                del pending[i]
        if pending:
            time.sleep(1)
    for i, (name, expr) in enumerate(queries):
        print(f"{'EMPTY' if i in pending else 'ok   '} {name}: {expr}")
    assert not pending, "queries with no data:\n" + "\n".join(f"  {n}: {e}" for n, e in pending.values())
    # The malformed message the fixture sent is counted, and Prometheus saw the count.
    rejected = query(port, 'sum(streamssl_learner_messages_rejected_total{job="streamssl-learner"})')
    assert float(rejected[0]["value"][1]) >= 1, rejected
    # Both targets healthy as Prometheus sees them.
    health = {t["labels"]["job"]: t["health"] for t in api(port, "targets")["activeTargets"]}
    assert health == {"streamssl-learner": "up", "streamssl-capture": "up", "streamssl-events": "up"}
    print(f"{len(queries)} queries returned data ({len(dash['panels'])} dashboard panels incl. rows, {len(rules)} rules)")
