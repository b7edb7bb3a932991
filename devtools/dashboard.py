"""The Grafana dashboard of deploy/grafana/dashboards/, written from this description:
`python -m devtools.dashboard` writes it, tests/unit/test_monitoring.py checks that the file is what
this writes and that every metric it queries is one the workers or the web process export.

Panels by sender, kind (message type) and code; never by campaign run, whose label would grow
without bound. The shared state every worker reads from Redis (queue depth, breaker, limits, dead
letters, live workers) is taken as max over instances, never summed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards" / "whatsapp-dispatch.json"
UID = "whatsapp-dispatch"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SENDER = 'sender=~"$sender"'
WIDTH = 24


def per_second(metric: str, by: str, where: str = SENDER) -> str:
    """A counter's rate, summed by `by`."""
    selector = f"{{{where}}}" if where else ""
    return f"sum by ({by}) (rate({metric}{selector}[$__rate_interval]))"


def quantiles(metric: str, by: str = "", where: str = "") -> list[tuple[str, str]]:
    """p50 and p99 of a histogram, one line per `by` value."""
    selector = f"{{{where}}}" if where else ""
    group = f"{by}, le" if by else "le"
    name = "".join(f" {{{{{label.strip()}}}}}" for label in by.split(",")) if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{selector}[$__rate_interval])))",
            f"p{round(q * 100)}{name}",
        )
        for q in (0.5, 0.99)
    ]


def panel(
    title: str,
    description: str,
    queries: list[tuple[str, str]],
    unit: str = "short",
    kind: str = "timeseries",
    width: int = 12,
    height: int = 8,
    **options: Any,
) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [
            {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
            for i, (expr, legend) in enumerate(queries)
        ],
        "fieldConfig": {"defaults": {"unit": unit, **options.pop("defaults", {})}, "overrides": []},
        "options": options,
        "gridPos": {"w": width, "h": height},
    }


def stat(title: str, description: str, queries: list[tuple[str, str]], **defaults: Any) -> dict[str, Any]:
    return panel(
        title,
        description,
        queries,
        kind="stat",
        width=6,
        height=5,
        defaults=defaults,
        reduceOptions={"calcs": ["lastNotNull"], "fields": "", "values": False},
        colorMode="background",
    )


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


BREAKER_STATES = [
    {
        "type": "value",
        "options": {"0": {"text": "closed", "color": "green"}, "1": {"text": "open", "color": "red"}},
    }
]

ROWS: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "Throughput and failures",
        [
            panel(
                "Sent by sender and type",
                "Messages the API accepted (a wamid came back), per second.",
                [(per_second("wa_messages_sent_total", "sender, type"), "{{sender}} {{type}}")],
                unit="reqps",
            ),
            panel(
                "Failures by sender, kind and code",
                "Messages that ended in failure, per second: at the API (permanent, exhausted,"
                " ambiguous) or by a failed status webhook (undelivered). Each is in the dead letters.",
                [
                    (
                        per_second("wa_messages_failed_total", "sender, kind, code"),
                        "{{sender}} {{kind}} {{code}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "API errors by code",
                "Every API call answered with an error, per second, including those that pause the"
                " number (190, 131048) or requeue (131056, throttling), which never show as failures.",
                [(per_second("wa_api_errors_total", "sender, code"), "{{sender}} {{code}}")],
                unit="reqps",
            ),
            panel(
                "Requeues by reason",
                "Intents handed back to the queue or parked (throttled, paused, no slot, pair limit),"
                " per second.",
                [(per_second("wa_retries_total", "sender, reason"), "{{sender}} {{reason}}")],
                unit="reqps",
            ),
        ],
    ),
    (
        "Latency",
        [
            panel(
                "Enqueue to first attempt (p50, p99)",
                "From the publish of a message enqueued one by one to its first API call: the queue,"
                " the rate limit and any parking. The task id is the exemplar of each bucket.",
                quantiles("wa_enqueue_to_first_attempt_seconds", "sender", SENDER),
                unit="s",
            ),
            panel(
                "Enqueue to wamid (p50, p99)",
                "From the publish to the API's wamid, by sender and message type: what an OTP's user"
                " waits for before the network delivers it. Alert MessagesSlow past 10 s (p99).",
                quantiles("wa_enqueue_to_wamid_seconds", "sender, type", SENDER),
                unit="s",
            ),
            panel(
                "API call (p50, p99)",
                "Interakt's response time per call, by sender.",
                quantiles("wa_api_latency_seconds", "sender", SENDER),
                unit="s",
            ),
            panel(
                "Webhook accept (p50, p99)",
                "The web process, from a webhook POST's arrival to its answer once stored: Interakt"
                " gives up at 3 s. Alert WebhookAnswerSlow past 2 s (p99).",
                quantiles("wa_webhook_accept_seconds", "source"),
                unit="s",
            ),
            panel(
                "Rate-limit wait (p50, p99)",
                "Time a send waited for its slot in the number's rate.",
                quantiles("wa_rate_limit_wait_seconds"),
                unit="s",
                width=WIDTH,
            ),
        ],
    ),
    (
        "Backlog, limits and breaker",
        [
            panel(
                "Queue depth",
                "Messages waiting in each broker queue (whatsapp.released, whatsapp, campaign).",
                [("max by (queue) (wa_queue_depth)", "{{queue}}")],
            ),
            panel(
                "Parked",
                "Intents parked in Redis for their number's turn, and how far ahead each sender's"
                " parked line reaches (the wait of the last intent parked), in seconds.",
                [
                    ("max(wa_parked_intents)", "parked intents"),
                    (f"max by (sender) (wa_parked_line_seconds{{{SENDER}}})", "line {{sender}} (s)"),
                ],
            ),
            panel(
                "Daily messaging limit used",
                "Unique template recipients in the rolling 24 h over the sender's daily_limit (shared"
                " by the numbers of one account). Alert DailyLimitNearlyReached past 90 %.",
                [
                    (
                        f"max by (sender) (wa_daily_limit_used{{{SENDER}}})"
                        f" / max by (sender) (wa_daily_limit{{{SENDER}}})",
                        "{{sender}}",
                    )
                ],
                unit="percentunit",
                kind="bargauge",
                defaults={
                    "min": 0,
                    "max": 1,
                    "thresholds": thresholds((None, "green"), (0.75, "orange"), (0.9, "red")),
                },
                displayMode="gradient",
                orientation="horizontal",
            ),
            panel(
                "Breaker",
                "Open: an account error (or a pause by hand) holds every message of the sender; a"
                " probe goes every DISPATCH_BREAKER_PROBE_INTERVAL and the first success closes it.",
                [
                    (f"max by (sender) (wa_breaker_open{{{SENDER}}})", "{{sender}}"),
                    (f"max by (sender) (wa_breaker_manual{{{SENDER}}})", "{{sender}} by hand"),
                ],
                kind="stat",
                defaults={"mappings": BREAKER_STATES, "thresholds": thresholds((None, "green"), (1, "red"))},
                reduceOptions={"calcs": ["lastNotNull"], "fields": "", "values": False},
                colorMode="background",
            ),
            stat(
                "Workers alive",
                "Worker processes whose heartbeat in Redis is fresh.",
                [("max(wa_workers_alive)", "alive")],
                thresholds=thresholds((None, "red"), (1, "green")),
            ),
            stat(
                "Dead letters",
                "Intents kept for re-drive (wa-dispatch failed list).",
                [("max(wa_dead_letters)", "dead letters")],
                thresholds=thresholds((None, "green"), (1, "orange")),
            ),
            stat(
                "Recovery events (24 h)",
                "Workers found dead, their messages put back, lost tasks published again by the"
                " ledger audit.",
                [("sum by (event) (increase(wa_recovery_events_total[24h]))", "{{event}}")],
                thresholds=thresholds((None, "green"), (1, "orange")),
            ),
            stat(
                "Alerts firing",
                "The alerts of deploy/prometheus/rules.yml firing now; what to do: docs/monitoring.md.",
                [('count(ALERTS{alertstate="firing"}) or vector(0)', "firing")],
                thresholds=thresholds((None, "green"), (1, "red")),
            ),
        ],
    ),
    (
        "Webhooks and the funnel",
        [
            panel(
                "Funnel by sender",
                "Per second: accepted by the API (wamid), then the statuses that changed a message. A"
                " message read before its delivered status came counts as read only.",
                [
                    (per_second("wa_messages_sent_total", "sender"), "{{sender}} sent"),
                    (
                        per_second(
                            "wa_message_statuses_total",
                            "sender, status",
                            f'{SENDER}, status=~"delivered|read"',
                        ),
                        "{{sender}} {{status}}",
                    ),
                    (
                        per_second("wa_message_statuses_total", "sender", f'{SENDER}, status="failed"'),
                        "{{sender}} failed",
                    ),
                ],
                unit="reqps",
            ),
            panel(
                "Webhook lag (p50, p99)",
                "From an event's own timestamp to its being applied by a worker. Alert WebhookLagHigh"
                " past 60 s (p99).",
                quantiles("wa_webhook_lag_seconds"),
                unit="s",
            ),
            panel(
                "Webhook events",
                "Accepted by the web process (stored), applied by workers (changed or a replay),"
                " refused by reason.",
                [
                    (
                        per_second("wa_webhook_events_received_total", "source, event", ""),
                        "received {{source}} {{event}}",
                    ),
                    (
                        per_second("wa_webhook_events_applied_total", "event, outcome", ""),
                        "applied {{event}} {{outcome}}",
                    ),
                    (per_second("wa_webhook_rejected_total", "reason", ""), "rejected {{reason}}"),
                ],
                unit="reqps",
                width=WIDTH,
            ),
        ],
    ),
]


def layout(rows: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Rows one under another, each row's panels left to right, wrapping at the grid's width."""
    panels: list[dict[str, Any]] = []
    y = 0
    for title, members in rows:
        panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"x": 0, "y": y, "w": WIDTH, "h": 1},
            }
        )
        y += 1
        x = height = 0
        for member in members:
            size = member["gridPos"]
            if x + size["w"] > WIDTH:
                x, y = 0, y + height
                height = 0
            size.update(x=x, y=y)
            x += size["w"]
            height = max(height, size["h"])
        y += height
        panels.extend(members)
    for i, each in enumerate(panels, start=1):
        each["id"] = i
    return panels


def dashboard() -> dict[str, Any]:
    return {
        "uid": UID,
        "title": "whatsapp-dispatch",
        "description": "Sending, latency, backlog, limits, webhooks; alerts: deploy/prometheus/rules.yml",
        "tags": ["whatsapp-dispatch"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                {
                    "name": "sender",
                    "label": "Sender",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": "label_values(wa_messages_sent_total, sender)", "refId": "sender"},
                    "definition": "label_values(wa_messages_sent_total, sender)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "annotations": {"list": []},
        "panels": layout(ROWS),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render())
    sys.stdout.write(f"wrote {OUT}\n")


if __name__ == "__main__":
    main()
