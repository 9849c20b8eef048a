"""The feed's Prometheus metrics, on a registry of its own (tests build as many feeds as they like).

Label values are bounded: provider names and zones come from the config, outcomes and rejection
reasons from fixed lists, lead times from forecast.LEAD_BUCKETS. Secrets never reach a label.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from carbon_feed.forecast import BucketError

# HTTP attempts take 1 ms (loopback) to tens of seconds (a slow provider before its timeout).
_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REJECT_REASONS = (
    "nan",
    "not_a_number",
    "negative",
    "out_of_range",
    "bad_time",
    "unit",
    "unknown_zone",
    "other",
)
_REASON_NEEDLES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("nan", "inf", "finite"), "nan"),
    (("must be a number", "not a number"), "not_a_number"),
    (("negative",), "negative"),
    (("above", "outside", "range", "plausible", "absurd"), "out_of_range"),
    (("naive", "time", "period"), "bad_time"),
    (("unit",), "unit"),
    (("zone", "mapping"), "unknown_zone"),
)


def reject_reason(text: str) -> str:
    """Map a human-readable rejection onto a bounded label value.

    Rejections read "<zone>[ at <time>]: <why>" (carbon_feed.validate); only <why> is classified, so a
    zone or a timestamp can never decide the label.
    """
    why = text.split(": ", 1)[-1].lower()
    for needles, reason in _REASON_NEEDLES:
        if any(needle in why for needle in needles):
            return reason
    return "other"


class FeedMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "carbon_feed_provider_requests",
            "HTTP attempts to carbon-intensity providers, by outcome.",
            ["provider", "outcome"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "carbon_feed_provider_request_duration_seconds",
            "Duration of one HTTP attempt to a provider.",
            ["provider"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.fetches = Counter(
            "carbon_feed_fetches",
            "Provider refreshes (all attempts of one round), by outcome (ok or error).",
            ["provider", "outcome"],
            registry=r,
        )
        self.fetch_seconds = Histogram(
            "carbon_feed_fetch_duration_seconds",
            "Duration of one provider refresh round, retries included.",
            ["provider"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "carbon_feed_last_success_timestamp_seconds",
            "Unix time of the last refresh that returned a reading for the zone.",
            ["provider", "zone"],
            registry=r,
        )
        self.intensity = Gauge(
            "carbon_feed_intensity_grams_per_kwh",
            "Latest carbon intensity served per zone (gCO2eq/kWh), by signal (average or marginal).",
            ["zone", "signal"],
            registry=r,
        )
        self.index = Gauge(
            "carbon_feed_signal_index_percent",
            "Latest percentile index (0-100) per zone, e.g. WattTime signal-index; not an emission rate.",
            ["zone"],
            registry=r,
        )
        self.forecast = Gauge(
            "carbon_feed_forecast_grams_per_kwh",
            "Forecast intensity per zone at the end of each lead-time bucket.",
            ["zone", "lead"],
            registry=r,
        )
        self.forecast_mape = Gauge(
            "carbon_feed_forecast_mape_ratio",
            "Mean absolute percentage error (ratio) of past forecasts against later actuals, by lead.",
            ["source", "lead"],
            registry=r,
        )
        self.forecast_samples = Gauge(
            "carbon_feed_forecast_error_samples",
            "Number of forecast/actual pairs behind carbon_feed_forecast_mape_ratio.",
            ["source", "lead"],
            registry=r,
        )
        self.rejected = Counter(
            "carbon_feed_rejected_values",
            "Provider values dropped by validation, by reason.",
            ["provider", "reason"],
            registry=r,
        )
        self.store_rows = Gauge("carbon_feed_store_rows", "Rows of history in the SQLite store.", registry=r)
        self.store_bytes = Gauge(
            "carbon_feed_store_size_bytes", "Size of the SQLite store and its WAL on disk.", registry=r
        )
        self.snapshot_zones = Gauge(
            "carbon_feed_snapshot_zones", "Zones in the last snapshot written.", registry=r
        )
        self.snapshot_writes = Counter(
            "carbon_feed_snapshot_writes", "Snapshot file writes, by outcome.", ["outcome"], registry=r
        )
        self.loop_errors = Counter(
            "carbon_feed_loop_errors",
            "Unexpected exceptions in the feed's background work (a rebuild of the view, which also "
            "writes the snapshot and prunes; or a refresh loop), by task; each is logged and retried.",
            ["task"],
            registry=r,
        )

    def observe_request(self, provider: str, outcome: str, seconds: float) -> None:
        """The providers' RequestObserver: one call per HTTP attempt."""
        self.requests.labels(provider, outcome).inc()
        self.request_seconds.labels(provider).observe(max(0.0, seconds))

    def record_rejected(self, provider: str, reasons: Iterable[str]) -> None:
        for text in reasons:
            self.rejected.labels(provider, reject_reason(text)).inc()

    def record_errors(self, source: str, errors: dict[str, BucketError]) -> None:
        for bucket, err in errors.items():
            self.forecast_mape.labels(source, bucket).set(err.mape)
            self.forecast_samples.labels(source, bucket).set(err.samples)
