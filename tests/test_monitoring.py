"""The dashboard and the alert rules (monitoring/): every metric a panel or a rule names is one
the project exports, with the labels they filter on; the dashboard is per account. (Whether the
rules fire as intended is promtool's part: `make rules`, esms-alerts.test.yml.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from esms_callbacks.ops.metrics import AccountCollector
from esms_callbacks.ops.status import account_state
from tests.helpers import runtime_of

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"
DASHBOARD = MONITORING / "grafana" / "esms-dashboard.json"
RULES = MONITORING / "prometheus" / "esms-alerts.yml"

# A metric named in PromQL and the label matchers right after it, if any.
SELECTOR = re.compile(r"\b(esms_[a-z_]+)\b\s*(?:\{([^}]*)\})?")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def panel_expressions() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def used(expressions: list[str]) -> dict[str, set[str]]:
    """Each metric the expressions name -> the labels they filter it on."""
    out: dict[str, set[str]] = {}
    for expr in expressions:
        for name, matchers in SELECTOR.findall(expr):
            out.setdefault(name, set()).update(MATCHER.findall(matchers))
    return out


@pytest.fixture
def exported(make_settings) -> dict[str, set[str]]:
    """Every series name the collector exports (as Prometheus sees it: counters with _total)
    -> its labels, from a real snapshot with something in every family."""
    runtime = runtime_of(make_settings())
    now_s = runtime.clock.now_s()
    runtime.backlog.park("oa-1", ["m1"], now_s)
    runtime.redis.hset(
        runtime.keys.stats,
        mapping={
            "requests": 1,
            "refs_asked": 1,
            "not_durable": 1,
            "reconcile:rows": 1,
            "reconcile:adopted": 1,
            "reconcile:settled": 1,
            "events:sent": 1,
            "errors:160": 1,
            "pushes:accepted": 1,
            "pushes_applied:published": 1,
            "endpoint_requests:query": 1,
            "endpoint_errors:query:101": 1,
        },
    )
    state = account_state(runtime, now_s)
    names: dict[str, set[str]] = {}
    for family in AccountCollector(lambda: [state]).collect():
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        assert samples, f"{family.name}: no sample to check the dashboard and rules against"
        for sample in samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def test_every_metric_the_dashboard_and_rules_name_is_exported_with_its_labels(exported):
    expressions = panel_expressions() + rule_expressions()
    assert len(expressions) > 20
    named = used(expressions)
    # the list, each on the dashboard or in a rule
    for wanted in (
        "esms_waiting_refs",
        "esms_rate_used",
        "esms_requests_total",
        "esms_errors_total",
        "esms_backing_off_seconds",
        "esms_window_open",
        "esms_events_total",
        "esms_status_queue_events",
        "esms_endpoint_requests_total",
        "esms_endpoint_errors_total",
        "esms_not_durable_total",
    ):
        assert wanted in named
    for name, labels in named.items():
        assert name in exported, f"{name} is named in monitoring/ but not exported"
        assert labels <= exported[name], f"{name} has no label {labels - exported[name]}"


def test_the_dashboard_is_per_account_on_a_chosen_prometheus():
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["account"]["definition"] == "label_values(esms_waiting_refs, account)"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            # every metric in it filtered to the chosen accounts
            names = SELECTOR.findall(target["expr"])
            assert names, panel["title"]
            for name, matchers in names:
                assert 'account=~"$account"' in matchers, (panel["title"], name)


def test_every_rule_says_how_bad_and_what_to_do():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for rule in (rule for group in groups for rule in group["rules"]):
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert annotations["runbook"] == "docs/operations.md#dashboards-and-alerts"
