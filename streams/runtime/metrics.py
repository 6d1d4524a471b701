"""All of freshet's Prometheus metrics, held in one object created against an injected registry.

Names follow Prometheus conventions: units in names (``_seconds``, ``_bytes``), ``_total`` for counters.
Each process builds one :class:`Metrics`; each test builds a fresh ``CollectorRegistry``.

>>> from prometheus_client import CollectorRegistry
>>> m = Metrics(CollectorRegistry())
>>> m.events.labels(stage="validate").inc()
>>> m.registry.get_sample_value("freshet_events_total", {"stage": "validate"})
1.0
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("freshet.drift")

LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
LABEL_DELAY_BUCKETS_S = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)


class Metrics:
    """The metric catalogue. README.md ("Metrics") documents every one of these."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # Throughput
        self.events = Counter(
            "freshet_events_total",
            "Events seen, by stage (validate, features, predict)",
            ["stage"],
            registry=r,
        )
        self.predictions = Counter("freshet_predictions_total", "Predictions published", ["model"], registry=r)
        self.dead_letters = Counter(
            "freshet_dead_letters_total",
            "Messages sent to the dead-letter topic",
            ["source", "reason"],
            registry=r,
        )
        self.late_events = Counter(
            "freshet_late_events_total", "Events behind the watermark beyond grace", ["policy"], registry=r
        )
        # Latency and freshness
        self.prediction_latency = Histogram(
            "freshet_event_to_prediction_seconds",
            "Wall time from the event's append to Kafka to its prediction's publication",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.feature_freshness = Histogram(
            "freshet_feature_freshness_seconds",
            "Wall time from the event's append to Kafka until its features are readable in the online store",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.feature_entities = Gauge(
            "freshet_feature_state_entities", "Entities with window state in this worker", registry=r
        )
        self.redelivered = Counter(
            "freshet_redelivered_events_total",
            "Events read again after a crash whose state already held them (not predicted twice)",
            registry=r,
        )
        self.feature_resets = Counter(
            "freshet_feature_state_resets_total",
            "Entity states written by another feature spec (or corrupt), started afresh",
            registry=r,
        )
        self.store_errors = Counter(
            "freshet_online_store_errors_total",
            "Online-store writes that failed (the batch of rows is dropped; serving goes on)",
            registry=r,
        )
        self.store_dropped = Counter(
            "freshet_online_store_dropped_rows_total",
            "Feature rows held through an online-store outage and dropped (more entities than the hold keeps)",
            registry=r,
        )
        self.store_up = Gauge(
            "freshet_store_up",
            "1 while the auxiliary store answers (store: online, registry), 0 during an outage",
            ["store"],
            registry=r,
        )
        self.log_suppressed = Counter(
            "freshet_log_lines_suppressed_total",
            "Log lines of a kind already logged in the last interval, left out (rate-limited logging)",
            registry=r,
        )
        self.feature_expired = Counter(
            "freshet_feature_state_expired_total",
            "Entity states deleted because every window and grace ended (event time)",
            registry=r,
        )
        # Label join
        self.labels = Counter(
            "freshet_labels_total",
            "Labels by outcome (joined, duplicate, unknown, expired_prediction)",
            ["outcome"],
            registry=r,
        )
        self.label_delay = Histogram(
            "freshet_label_delay_seconds",
            "Event time of the label minus event time of the prediction",
            buckets=LABEL_DELAY_BUCKETS_S,
            registry=r,
        )
        self.pending_predictions = Gauge(
            "freshet_pending_predictions", "Predictions waiting for their label", registry=r
        )
        # Learning
        self.examples_learned = Counter(
            "freshet_examples_learned_total", "Examples learned, per model", ["model"], registry=r
        )
        self.online_metric = Gauge(
            "freshet_online_metric",
            "Test-then-train metric per model (metric: accuracy, log_loss, roc_auc, f1, mae, rmse, r2; "
            "scope: rolling or cumulative)",
            ["model", "metric", "scope"],
            registry=r,
        )
        self.model_version = Gauge(
            "freshet_model_version",
            "Version currently served (predict) or trained (learn)",
            ["model", "role"],
            registry=r,
        )
        self.model_swaps = Counter(
            "freshet_model_swaps_total",
            "Model versions hot-swapped into the predictor",
            ["model"],
            registry=r,
        )
        # Freshness of what is served (issue 13), set by each worker's version follower.
        self.served_staleness_examples = Gauge(
            "freshet_served_model_staleness_examples",
            "Examples the learner has learned that the served version has not, as far as this worker knows",
            ["model"],
            registry=r,
        )
        self.served_staleness_seconds = Gauge(
            "freshet_served_model_staleness_seconds",
            "Seconds since this worker first heard the learner was ahead of the served version (0: it is not)",
            ["model"],
            registry=r,
        )
        self.swap_seconds = Gauge(
            "freshet_model_swap_seconds",
            "Wall time of the last hot-swap's load (read, verify, unpickle; off the event loop)",
            ["model"],
            registry=r,
        )
        self.swap_bytes = Gauge(
            "freshet_model_swap_bytes", "Size of the last version hot-swapped (its champion record)", ["model"],
            registry=r,
        )
        self.promotions = Counter("freshet_promotions_total", "Champion changes", ["slot", "reason"], registry=r)
        self.snapshot_bytes = Gauge(
            "freshet_model_snapshot_bytes", "Size of the last model snapshot", ["model"], registry=r
        )
        # Drift
        self.drift_alerts = Counter(
            "freshet_drift_alerts_total",
            "Drift alerts (kind: concept, feature, prediction, label; level: warning or drift)",
            ["kind", "subject", "detector", "level"],
            registry=r,
        )
        self.drift_actions = Counter(
            "freshet_drift_actions_total",
            "What a model's drift policy did (promote, reset_and_retrain, alert)",
            ["slot", "action"],
            registry=r,
        )
        self.drift_statistic = Gauge(
            "freshet_drift_statistic",
            "Last drift statistic (PSI, KS, detector estimate)",
            ["kind", "subject", "statistic"],
            registry=r,
        )
        # Routing (issue 10): A/B splits, canaries, bandits
        self.routed_predictions = Counter(
            "freshet_routed_predictions_total", "Predictions of a routed slot, by the arm (model) that served them",
            ["slot", "arm", "route"], registry=r,
        )
        self.arm_share = Gauge(
            "freshet_arm_share", "Share of a routed slot's traffic each arm has in the plan served now",
            ["slot", "arm", "experiment"], registry=r,
        )
        self.arm_metric = Gauge(
            "freshet_arm_metric", "Served metrics per arm per experiment, from the joined labels (learner)",
            ["slot", "experiment", "arm", "metric", "scope"], registry=r,
        )
        self.arm_predict_seconds = Gauge(
            "freshet_arm_predict_seconds", "Mean time of one prediction per arm (the canary latency guard)",
            ["slot", "arm"], registry=r,
        )
        self.routing_decisions = Counter(
            "freshet_routing_decisions_total", "Routing decisions (canary start/step/rollback/promote, bandit shares)",
            ["slot", "kind", "decision"], registry=r,
        )
        self.canary_rollbacks = Counter(
            "freshet_canary_rollbacks_total", "Canaries rolled back by a guard breach, by the guard",
            ["slot", "reason"], registry=r,
        )
        # Kafka
        self.ready = Gauge(
            "freshet_worker_ready",
            "1 once the worker has its partitions and has recovered its tables",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "freshet_consumer_lag_messages",
            "Messages behind the end of each input topic partition",
            ["topic", "partition"],
            registry=r,
        )

    def record_alert(self, alert: dict[str, Any]) -> None:
        """Count and log one drift alert (a ``DriftAlert.to_dict()``); publishing it is the caller's."""
        self.drift_alerts.labels(
            kind=alert["kind"], subject=alert["subject"], detector=alert["detector"], level=alert["level"]
        ).inc()
        self.drift_statistic.labels(kind=alert["kind"], subject=alert["subject"], statistic=alert["statistic"]).set(
            alert["value"]
        )
        log.warning(
            "drift: %s on %s (%s %s=%s, threshold %s)",
            alert["kind"],
            alert["subject"],
            alert["detector"],
            alert["statistic"],
            alert["value"],
            alert["threshold"],
        )
