"""Metrics that cost next to nothing on the hot path, exported two ways.

Requests count into plain dicts and fixed histogram buckets (a dict increment and a bisect:
tens of nanoseconds; an OpenTelemetry SDK instrument call per request costs about 40% of the
hot path's throughput). ``/metrics`` renders them as Prometheus text through prometheus_client;
with an OTLP endpoint configured, OpenTelemetry observable instruments read the same numbers
on each export. Gauges (store health, breaker state, sync age) are callbacks read at scrape time.
Each worker process has its own numbers: run one worker per container (docs/operations.md).
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# Seconds: a warm hit is ~0.1 ms at the gateway, a cold S3 read tens of ms, a hung store the
# timeout.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
           1.0, 2.5, 5.0, 10.0)
PREFIX = "regfront_"

Labels = tuple[str, ...]
Gauge = Callable[[], Iterable[tuple[dict[str, str], float]]]


class Histogram:
    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        running, out = 0, []
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


@dataclass
class Family:
    """One metric name: its help, label names, and values by label values."""

    name: str
    help: str
    labels: Labels
    kind: str  # counter | histogram
    values: defaultdict[Labels, Any] = field(default_factory=lambda: defaultdict(int))


class Metrics(Collector):
    """Every number the gateway reports; ``inc``/``observe`` are the hot-path calls."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}
        self.gauges: dict[str, tuple[str, Labels, Gauge]] = {}
        self.started = time.time()

    def counter(self, name: str, help: str, labels: Labels) -> defaultdict[Labels, int]:
        """Register a counter; returns the dict to increment (``values[labels] += 1``)."""
        family = self.families.setdefault(name, Family(name, help, labels, "counter"))
        values: defaultdict[Labels, int] = family.values
        return values

    def histogram(self, name: str, help: str,
                  labels: Labels) -> defaultdict[Labels, Histogram]:
        family = self.families.setdefault(
            name, Family(name, help, labels, "histogram", defaultdict(Histogram)))
        values: defaultdict[Labels, Histogram] = family.values
        return values

    def gauge(self, name: str, help: str, labels: Labels, read: Gauge) -> None:
        """A value read when scraped (health, ages); ``read`` yields (labels, value)."""
        self.gauges[name] = (help, labels, read)

    # -- Prometheus ------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        for family in list(self.families.values()):
            name, labels = PREFIX + family.name, list(family.labels)
            if family.kind == "counter":
                counter = CounterMetricFamily(name, family.help, labels=labels)
                for values, count in list(family.values.items()):
                    counter.add_metric(list(values), count)
                yield counter
            else:
                histogram = HistogramMetricFamily(name, family.help, labels=labels)
                for values, hist in list(family.values.items()):
                    histogram.add_metric(list(values), hist.cumulative(), hist.sum)
                yield histogram
        for gauge_name, (help, gauge_labels, read) in list(self.gauges.items()):
            gauge = GaugeMetricFamily(PREFIX + gauge_name, help, labels=list(gauge_labels))
            for attributes, value in read():
                gauge.add_metric([attributes.get(label, "") for label in gauge_labels], value)
            yield gauge

    # -- OpenTelemetry ---------------------------------------------------------------------

    def observe_with(self, meter: Any) -> None:
        """Register observable instruments on an OpenTelemetry ``meter`` reading these numbers.

        OpenTelemetry has no observable histogram, so a histogram is exported as cumulative
        ``<name>_bucket`` counters with an ``le`` attribute plus ``_sum`` and ``_count``, the
        way Prometheus represents one.
        """
        from opentelemetry.metrics import CallbackOptions, Observation

        def counter_callback(family: Family) -> Callable[[CallbackOptions], list[Observation]]:
            def callback(options: CallbackOptions) -> list[Observation]:
                return [Observation(count, dict(zip(family.labels, values, strict=True)))
                        for values, count in list(family.values.items())]
            return callback

        def bucket_callback(family: Family,
                            part: str) -> Callable[[CallbackOptions], list[Observation]]:
            def callback(options: CallbackOptions) -> list[Observation]:
                out = []
                for values, hist in list(family.values.items()):
                    attributes = dict(zip(family.labels, values, strict=True))
                    if part == "bucket":
                        out += [Observation(count, {**attributes, "le": bound})
                                for bound, count in hist.cumulative()]
                    else:
                        out.append(Observation(hist.sum if part == "sum" else hist.count,
                                               attributes))
                return out
            return callback

        def gauge_callback(read: Gauge) -> Callable[[CallbackOptions], list[Observation]]:
            def callback(options: CallbackOptions) -> list[Observation]:
                return [Observation(value, attributes) for attributes, value in read()]
            return callback

        for family in self.families.values():
            name = PREFIX + family.name
            if family.kind == "counter":
                meter.create_observable_counter(name, [counter_callback(family)],
                                                description=family.help)
            else:
                for part in ("bucket", "sum", "count"):
                    meter.create_observable_counter(f"{name}_{part}",
                                                    [bucket_callback(family, part)],
                                                    description=family.help)
        for name, (help, _, read) in self.gauges.items():
            meter.create_observable_gauge(PREFIX + name, [gauge_callback(read)],
                                          description=help)
