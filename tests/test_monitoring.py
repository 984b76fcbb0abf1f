"""monitoring/: Prometheus config and rules pass the real promtool, the dashboard is
generated and up to date, and every query names only metrics that streamssl/observability/metrics.py
defines — with every one of those on a panel.

promtool is a required component (Debian package ``prometheus``): a missing promtool
fails these tests, it does not skip them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streamssl.observability.metrics import CaptureMetrics, EventsMetrics, LearnerMetrics

REPO = Path(__file__).resolve().parent.parent
MON = REPO / "monitoring"
PROM_CONFIG = MON / "prometheus" / "prometheus.yml"
RULES = MON / "prometheus" / "rules" / "streamssl.rules.yml"
RULE_TESTS = MON / "prometheus" / "tests" / "streamssl.test.yml"
DASHBOARD = MON / "grafana" / "dashboards" / "streamssl.json"
DATASOURCE = MON / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"

# Series Prometheus itself attaches to every scrape target.
PROMETHEUS_BUILTIN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                   "group_right", "inf", "nan", "atan2"}
# The list: learner down, behind real time, shedding audio, non-finite loss,
# collapse, drift detected, checkpoint stale.
REQUIRED_ALERTS = {
    "StreamsslLearnerDown", "StreamsslLearnerBehindRealtime", "StreamsslShedding", "StreamsslNonFiniteLoss",
    "StreamsslCollapse", "StreamsslDriftDetected", "StreamsslCheckpointStale",
}
REQUIRED_ROWS = {"Throughput and latency", "Losses and learning", "Drift and collapse", "Capture and intake health",
                 "Sound events (streamssl events)"}


# --- helpers shared with tests/test_prometheus_e2e.py ------------------------------


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: install the Debian package 'prometheus' (make system)"
    return path


def exposed_names() -> dict[str, set[str]]:
    """{family name: names it exposes} from a live registry holding every streamssl metric."""
    registry = CollectorRegistry()
    CaptureMetrics(registry)
    LearnerMetrics(registry)
    EventsMetrics(registry)
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "info": ["_info"],
                "gauge": [""], "summary": ["_sum", "_count", ""]}
    return {f.name: {f.name + s for s in suffixes[f.type]} for f in registry.collect()}


def rule_blocks() -> list[dict[str, str]]:
    """Each rule of the rules file as {"record"|"alert": name, "expr": text}.

    The file keeps one style (``expr:`` on one line, or ``>-`` and an indented block),
    which this reads without a YAML library; ``test_rule_parser_sees_every_rule``
    checks the count against promtool's own parse.
    """
    lines = RULES.read_text().splitlines()
    rules: list[dict[str, str]] = []
    i = 0
    while i < len(lines):
        m = re.match(r"\s*- (record|alert): (\S+)", lines[i])
        if m:
            rules.append({m.group(1): m.group(2)})
        m = re.match(r"(\s*)expr: (.*)$", lines[i])
        if m:
            indent, rest = len(m.group(1)), m.group(2).strip()
            if rest in (">-", ">", "|", "|-"):
                body = []
                while i + 1 < len(lines) and (not lines[i + 1].strip() or len(lines[i + 1]) - len(lines[i + 1].lstrip()) > indent):
                    i += 1
                    body.append(lines[i].strip())
                rest = " ".join(b for b in body if b)
            rules[-1]["expr"] = rest
        i += 1
    return rules


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel."""
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], tgt["expr"]) for p in dash["panels"] for tgt in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression selects (functions, keywords, labels and ranges removed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)  # label lists
    names = set()
    for m in re.finditer(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


# --- promtool ----------------------------------------------------------------------


def test_promtool_accepts_the_prometheus_config():
    out = subprocess.run([promtool(), "check", "config", str(PROM_CONFIG)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    text = PROM_CONFIG.read_text()
    assert "job_name: streamssl-learner" in text and '"127.0.0.1:9108"' in text
    assert "job_name: streamssl-capture" in text and '"127.0.0.1:9109"' in text


def test_promtool_accepts_the_rules_and_the_parser_sees_every_rule():
    out = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    found = int(re.search(r"SUCCESS: (\d+) rules found", out.stdout).group(1))
    rules = rule_blocks()
    assert len(rules) == found and all(r.get("expr") for r in rules)
    assert REQUIRED_ALERTS <= {r["alert"] for r in rules if "alert" in r}


def test_promtool_rule_unit_tests_pass():
    out = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                         timeout=120, cwd=RULE_TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_firing_and_a_silent_unit_test():
    text = RULE_TESTS.read_text()
    for alert in (r["alert"] for r in rule_blocks() if "alert" in r):
        cases = re.findall(rf"alertname: {alert}\b(?:, exp_alerts: (\[\]))?\s*\n(\s*exp_alerts: (\[\]))?", text)
        silent = [c for c in cases if c[0] == "[]" or c[2] == "[]"]
        assert len(silent) >= 1, f"{alert}: no test where it stays silent"
        assert len(cases) - len(silent) >= 1, f"{alert}: no test where it fires"


# --- names -------------------------------------------------------------------------


def test_metric_name_extraction_reads_promql():
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, stream) (rate(a_bucket{x="y", z!~"w"}[$__rate_interval]))) '
        '/ on (instance) group_left (job) b_total > bool 1e-3 and up{job=~"s-.*"} unless c offset 5m'
    ) == {"a_bucket", "b_total", "up", "c"}


def test_rules_use_only_metrics_defined_in_metrics_py():
    known = set().union(*exposed_names().values()) | PROMETHEUS_BUILTIN
    rules = rule_blocks()
    recorded = {r["record"] for r in rules if "record" in r}
    for r in rules:
        unknown = metric_names(r["expr"]) - known - recorded
        assert not unknown, f"{r.get('alert') or r.get('record')}: unknown metrics {unknown}"
    for name in recorded:
        # level:metric:operations (Prometheus naming practice), the metric part a streamssl one.
        assert re.fullmatch(r"[a-z_]+:streamssl_[a-z0-9_]+:[a-z0-9_]+", name), name


def test_dashboard_uses_only_defined_metrics_and_shows_every_one():
    families = exposed_names()
    known = set().union(*families.values()) | PROMETHEUS_BUILTIN
    used: set[str] = set()
    for title, expr in dashboard_targets():
        names = metric_names(expr)
        assert names, f"{title}: {expr!r} selects no metric"
        assert not names - known, f"panel {title!r}: unknown metrics {names - known}"
        used |= names
    missing = sorted(f for f, exposed in families.items() if not exposed & used)
    assert not missing, f"metrics on no panel: {missing}"


# --- dashboard and provisioning ------------------------------------------------------


def test_dashboard_json_is_generated_from_generate_py_and_up_to_date():
    out = subprocess.run([sys.executable, str(MON / "grafana" / "generate.py"), "--check"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_dashboard_rows_panels_and_datasource_fit_together():
    dash = json.loads(DASHBOARD.read_text())
    uid = re.search(r"^\s*uid:\s*(\S+)", DATASOURCE.read_text(), re.M).group(1)
    rows = {p["title"] for p in dash["panels"] if p["type"] == "row"}
    assert REQUIRED_ROWS <= rows
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == uid, p["title"]
        assert p["targets"] and all(t["datasource"]["uid"] == uid for t in p["targets"])
    cells = set()
    for p in dash["panels"]:  # no two panels overlap in the grid
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))
    provider = (MON / "grafana" / "provisioning" / "dashboards" / "streamssl.yaml").read_text()
    compose = (MON / "compose.yaml").read_text()
    mounted = re.search(r"path:\s*(\S+)", provider).group(1)
    assert f"./grafana/dashboards:{mounted}:ro" in compose


@pytest.mark.parametrize("source", re.findall(r"- \./(\S+?):", (MON / "compose.yaml").read_text()))
def test_compose_mounts_files_that_exist(source):
    assert (MON / source).exists(), source


def test_promtool_check_metrics_finds_no_lint_problems_in_the_exposition():
    """What both daemons serve, every labelled metric with a child and the info metrics set,
    passes ``promtool check metrics`` (naming, suffixes, units, help text) without a remark."""
    from prometheus_client import Info, generate_latest
    from prometheus_client.metrics import MetricWrapperBase

    registry = CollectorRegistry()
    for holder in (CaptureMetrics(registry), LearnerMetrics(registry), EventsMetrics(registry)):
        for m in vars(holder).values():
            if isinstance(m, Info):
                m.info({"version": "0"})
            elif isinstance(m, MetricWrapperBase) and m._labelnames:  # noqa: SLF001 - no public accessor
                m.labels(*["x"] * len(m._labelnames))  # noqa: SLF001
    exposition = generate_latest(registry)
    assert b"streamssl_learner_loss{" in exposition and b"streamssl_capture_info{" in exposition
    out = subprocess.run([promtool(), "check", "metrics"], input=exposition, capture_output=True, timeout=60)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), (out.stdout + out.stderr).decode()


def test_dashboard_threshold_lines_are_the_alert_thresholds():
    """The spread, real-time factor, checkpoint-age and novelty panels draw the line their alert fires at."""
    rules = {r["alert"]: r["expr"] for r in rule_blocks() if "alert" in r}
    panels = {p["title"]: p for p in json.loads(DASHBOARD.read_text())["panels"]}

    def line(title: str) -> float:
        return panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"]

    floor = float(re.search(r"streamssl_learner_embedding_spread < ([0-9.]+)", rules["StreamsslCollapse"]).group(1))
    assert line("Embedding spread (collapse)") == floor
    rank = float(re.search(r"streamssl_learner_embedding_effective_rank < ([0-9.]+)",
                           rules["StreamsslDimensionalCollapse"]).group(1))
    assert line("Embedding effective rank (dimensional collapse)") == rank
    assert f"streamssl_learner_realtime_factor < {line('Real-time factor')}" in rules["StreamsslLearnerBehindRealtime"]
    assert f"> {line('Checkpoint age')}" in rules["StreamsslCheckpointStale"]
    assert f"[5m])) > {line('Novelty events per 5 minutes')}" in rules["StreamsslNoveltyBurst"]
    assert "increase(streamssl_events_novel_total[5m])" in panels["Novelty events per 5 minutes"]["targets"][0]["expr"]
