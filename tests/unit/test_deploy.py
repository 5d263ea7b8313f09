"""The Grafana dashboard and the Prometheus alert rules in deploy/: they name only metrics
zodworker exports, cover every one of them, parse as PromQL (``promtool check rules``) and
the alerts fire when they should (``promtool test rules``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from zodworker.observe import INSTRUMENTS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "zodworker-dashboard.json"
ALERTS = DEPLOY / "prometheus" / "zodworker-alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "zodworker-alerts.test.yml"
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool is not installed (.ci/run installs it from Debian)"
)


def _exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def _metric(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in _known():
            return name.removesuffix(suffix)
    return name


def _known() -> set[str]:
    return {i.name for i in INSTRUMENTS}


def _names(expr: str) -> set[str]:
    return {_metric(name) for name in re.findall(r"\bzodworker_[a-z_]+", expr)}


def test_the_dashboard_uses_only_exported_metrics_and_shows_every_one() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    used: set[str] = set()
    for title, expr in _exprs():
        names = _names(expr)
        assert names, f"panel {title!r} queries no zodworker metric"
        assert names <= _known(), (title, names - _known())
        used |= names
    assert used == _known(), f"metrics without a panel: {sorted(_known() - used)}"


def test_the_alert_rules_use_only_exported_metrics() -> None:
    text = ALERTS.read_text()
    exprs = re.findall(r"expr: (.+(?:\n {10,}.+)*)", text)
    assert len(exprs) >= 6
    for expr in exprs:
        assert _names(expr) and _names(expr) <= _known(), expr


@needs_promtool
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    assert promtool is not None
    check = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    tests = subprocess.run(
        [promtool, "test", "rules", ALERT_TESTS.name], cwd=ALERT_TESTS.parent, capture_output=True
    )
    assert tests.returncode == 0, tests.stdout.decode() + tests.stderr.decode()


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables filled in, as a recording rule."""
    assert promtool is not None
    rules: list[dict[str, Any]] = []
    for index, (_, expr) in enumerate(_exprs()):
        concrete = expr.replace("$__rate_interval", "5m").replace("$task", ".*")
        rules.append({"record": f"dashboard:query_{index}", "expr": concrete})
    path = tmp_path / "dashboard-rules.json"  # YAML is a superset of JSON
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
