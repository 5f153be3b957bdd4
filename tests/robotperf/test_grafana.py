"""docs/grafana/robotperf.json: a dashboard Grafana imports, whose every query names only
metrics that /metrics exposes (so no panel stays empty for want of a metric)."""

import json
import re

import pytest

from tests.robotperf.production import ROOT
from tests.scrape import families

DASHBOARD = ROOT / "docs" / "grafana" / "robotperf.json"
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan",
}  # fmt: skip


def panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard):
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def metric_names(expr):
    """The metric names in a PromQL expression: identifiers that are no function, keyword,
    label (inside braces or after by/without/on/ignoring) or Grafana variable."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\w+", "", expr)
    names = re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*+)(?!\s*\()", expr)
    return {name for name in names if name.lower() not in PROMQL_WORDS}


def test_metric_names_are_read_from_promql():
    expr = (
        "histogram_quantile(0.99, sum by (le, call) "
        '(rate(a_bucket{call=~"x|y"}[$__rate_interval])))'
        " / on (call) group_left b_total + time() - max(c) offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def test_the_dashboard_is_grafana_json_with_a_query_in_every_panel():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "robotperf"
    assert dashboard["schemaVersion"] >= 36
    assert {i["name"] for i in dashboard["__inputs"]} == {"DS_PROMETHEUS"}
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert {"type", "title", "gridPos"} <= set(panel)
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"] and t["refId"] for t in panel["targets"])


@pytest.mark.django_db
def test_every_query_names_metrics_that_metrics_exposes(client):
    exposed = families(client.get("/metrics").content.decode())
    dashboard = json.loads(DASHBOARD.read_text())

    missing = {
        (title, name)
        for title, expr in queries(dashboard)
        for name in metric_names(expr)
        if name not in exposed
    }
    assert not missing
    used = {name for _, expr in queries(dashboard) for name in metric_names(expr)}
    # Only the project's families: in multiprocess mode there is no process_* or python_* one.
    assert all(name.startswith("robotperf_") for name in used)
    # Every family of the project's own is on the dashboard.
    ours = {name for name in exposed if name.startswith("robotperf_")}
    bases = {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in used}
    assert {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in ours} <= bases
