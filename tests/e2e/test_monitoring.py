"""The Grafana dashboard (conf/herald-dashboard.json) and the Prometheus alert rules
(conf/herald-alerts.yml) use only metrics the broker exports: every metric name in
their PromQL is checked against a live /metrics. The rules file is read with
python3-yaml (scripts/deps.sh installs it)."""
import json
import re

import pytest
import requests

from conftest import REPO

DASHBOARD = REPO / "conf" / "herald-dashboard.json"
ALERTS = REPO / "conf" / "herald-alerts.yml"

# PromQL words that look like metric names but are not.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan"}
# Series Prometheus makes itself, not the broker.
SYNTHETIC = {"up"}


def metric_names(expr):
    """The metric names a PromQL expression reads."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                          # strings
    e = re.sub(r"\{[^}]*\}", "", e)                                       # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                                      # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)   # label lists
    e = re.sub(r"\$\w+", "", e)                                           # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", e):
        if m.group(2) or m.group(1).lower() in KEYWORDS:
            continue                                                      # a function, or a keyword
        names.add(m.group(1))
    return names


def test_metric_names_reads_promql():
    assert metric_names('histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{job="x",le!="1"}[5m]))) > 0.25'
                        ) == {"a_bucket"}
    assert metric_names("process_open_fds{job=\"h\"} / process_max_fds > 0.9") == {"process_open_fds", "process_max_fds"}
    assert metric_names('sum by (namespace) (rate(b_total{instance=~"$instance"}[$__rate_interval]))') == {"b_total"}
    assert metric_names("time() - c_seconds") == {"c_seconds"}


@pytest.fixture(scope="module")
def exported(shared_broker):
    """The sample names of a live /metrics (histograms as _bucket, _sum, _count)."""
    r = requests.get(shared_broker.url("/metrics"), timeout=5)
    assert r.status_code == 200
    names = {re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
             for line in r.text.splitlines() if line and not line.startswith("#")}
    assert "herald_connections" in names and "herald_publish_fanout_seconds_bucket" in names
    return names


def dashboard_panels(d):
    for p in d["panels"]:
        yield p
        yield from p.get("panels", [])


def test_dashboard_is_importable():
    d = json.loads(DASHBOARD.read_text())
    assert d["title"] and d["uid"] and isinstance(d["schemaVersion"], int)
    ids = [p["id"] for p in dashboard_panels(d)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in d["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    for p in dashboard_panels(d):
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].count("(") == t["expr"].count(")"), (p["title"], t["expr"])
            for v in re.findall(r"\$(\w+)", t["expr"]):
                assert v in variables or v.startswith("__"), (p["title"], v)


def test_dashboard_shows_what_the_issue_asks_for():
    d = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in dashboard_panels(d) for t in p.get("targets", []))
    for needed in ("herald_connections", "sum by (namespace) (rate(herald_publications_total",
                   "sum by (namespace) (rate(herald_namespace_deliveries_total",
                   "histogram_quantile(0.99, sum by (le) (rate(herald_publish_fanout_seconds_bucket",
                   "herald_slow_consumers_total", "herald_storage_map_usage_ratio", "herald_storage_alert_level",
                   "herald_auth_failures_total"):
        assert needed in exprs, needed


def test_dashboard_metrics_are_exported(exported):
    d = json.loads(DASHBOARD.read_text())
    used = set()
    for p in dashboard_panels(d):
        for t in p.get("targets", []):
            names = metric_names(t["expr"])
            assert names, (p["title"], t["expr"])
            used |= names
    for v in d["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            m = re.match(r"label_values\((\w+),", q["query"])
            used.add(m.group(1))
    missing = used - exported
    assert not missing, "the dashboard uses metrics the broker does not export: %s" % sorted(missing)


def test_alert_rules_are_well_formed_and_use_exported_metrics(exported):
    yaml = pytest.importorskip("yaml", reason="python3-yaml is missing (scripts/deps.sh installs it)")
    doc = yaml.safe_load(ALERTS.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert len(rules) >= 8
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    used = set()
    for r in rules:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r["alert"]
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"], r["alert"]
        assert "for" not in r or re.fullmatch(r"\d+[smh]", r["for"]), r["alert"]
        assert r["expr"].count("(") == r["expr"].count(")"), r["alert"]
        names = metric_names(r["expr"])
        assert names, r["alert"]
        used |= names
    missing = used - exported - SYNTHETIC
    assert not missing, "the alert rules use metrics the broker does not export: %s" % sorted(missing)
    # The raw text agrees: one expr line per rule, none spread over lines.
    assert len(re.findall(r"^\s+expr: \S", ALERTS.read_text(), re.M)) == len(rules)
