"""Prometheus metrics of the running bot (scraped at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

UPDATES = Counter("bot_updates_handled_total", "Incoming updates handled", ["transport"], registry=REGISTRY)
DUPLICATES = Counter("bot_updates_duplicate_total", "Duplicate deliveries dropped", ["transport"], registry=REGISTRY)
REPLY_SECONDS = Histogram(
    "bot_reply_seconds", "From receiving an update to its reply sent", ["transport"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SENT = Counter("bot_messages_sent_total", "Scheduled messages sent", ["transport"], registry=REGISTRY)
FAILED = Counter("bot_messages_failed_total", "Scheduled messages not delivered", ["transport", "outcome"], registry=REGISTRY)
OUTBOX_BACKLOG = Gauge("bot_outbox_backlog", "Pending outbox messages already due", registry=REGISTRY)
SENDING_PROCESSES = Gauge("bot_sending_processes",
                          "Bot processes sending through this database; each paces at its share of the limits",
                          registry=REGISTRY)
JOBS = Counter("bot_jobs_run_total", "Scheduled job runs", ["job"], registry=REGISTRY)
