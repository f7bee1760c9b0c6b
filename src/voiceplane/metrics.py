"""``GET /metrics``: the platform's figures in the Prometheus text format.

Read at scrape time from the parts that know them (no global registry, no counters kept
twice): calls by service and status from the store, calls in progress from the engine,
callbacks delivered, retried, given up and in flight and their delivery latency from the
dispatcher, and callbacks still pending from the outbox. Counts from the store survive
restarts; the dispatcher's counters are since its start.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.callbacks.dispatcher import Dispatcher
from voiceplane.calls.engine import CallEngine
from voiceplane.store.models import Call
from voiceplane.store.outbox import pending_count


class PlatformCollector(Collector):
    def __init__(
        self, readers: sessionmaker[Session], engine: CallEngine, dispatcher: Dispatcher
    ) -> None:
        self._readers = readers
        self._engine = engine
        self._dispatcher = dispatcher

    def collect(
        self,
    ) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        calls = GaugeMetricFamily(
            "voiceplane_calls", "Calls in the store by service, state and final status.",
            labels=["service", "state", "status"],
        )  # fmt: skip
        with self._readers.begin() as session:
            rows = session.execute(
                select(Call.service, Call.state, Call.status, func.count()).group_by(
                    Call.service, Call.state, Call.status
                )
            ).all()
            pending = pending_count(session)
        for service, state, status, count in rows:
            calls.add_metric([service, state, status or ""], count)
        yield calls
        yield GaugeMetricFamily(
            "voiceplane_calls_in_progress", "Calls this engine is carrying out now.",
            value=self._engine.active_calls,
        )  # fmt: skip
        dispatcher = self._dispatcher
        delivered = CounterMetricFamily(
            "voiceplane_callbacks", "Callback attempts since start, by outcome.",
            labels=["outcome"],
        )  # fmt: skip
        delivered.add_metric(["delivered"], dispatcher.delivered)
        delivered.add_metric(["retried"], dispatcher.retried)
        delivered.add_metric(["given_up"], dispatcher.given_up)
        yield delivered
        yield GaugeMetricFamily(
            "voiceplane_callbacks_pending", "Callbacks neither delivered nor given up.",
            value=pending,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "voiceplane_callbacks_in_flight", "Callbacks being sent now.",
            value=dispatcher.in_flight,
        )  # fmt: skip
        latency = dispatcher.latency
        yield HistogramMetricFamily(
            "voiceplane_callback_latency_seconds",
            "From a callback's creation (its change stored) to its 2xx, retries included.",
            buckets=latency.cumulative(), sum_value=latency.total_s,
        )  # fmt: skip


def registry_for(collector: Collector) -> CollectorRegistry:
    """A registry of its own (not the library's global one) holding ``collector``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
