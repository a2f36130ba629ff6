"""deploy/: the Grafana dashboard and Prometheus rules only chart series Earshot exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from earshot.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
EVAL_SERIES = {
    "earshot_eval_error_rate",
    "earshot_eval_partial_stability",
    "earshot_eval_hallucination_rate",
    "earshot_eval_offline_rtf",
    "earshot_eval_timestamp_seconds",
}


def exported() -> set[str]:
    names = set(EVAL_SERIES)
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type in ("counter", "histogram"):
            names.update(
                f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_count", "_sum")
            )
    return names


def series_in(expr: str) -> set[str]:
    return set(re.findall(r"\bearshot_[a-z_]+", expr))


def test_dashboard_panels_query_exported_series() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "earshot-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    unknown = set().union(*map(series_in, exprs)) - exported()
    assert not unknown
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_prometheus_config_scrapes_metrics_and_rules_use_exported_series() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    earshot = next(j for j in config["scrape_configs"] if j["job_name"] == "earshot")
    assert earshot["metrics_path"] == "/metrics"
    rules = yaml.safe_load((DEPLOY / config["rule_files"][0]).read_text())
    exprs = [str(r["expr"]) for g in rules["groups"] for r in g["rules"]]
    assert exprs and not set().union(*map(series_in, exprs)) - exported()
