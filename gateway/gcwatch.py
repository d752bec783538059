"""Garbage collection's health as the gateway's metrics: GC's report (written by the collector
in the primary store at the end of every run, registry/gcstate.py) is re-read every minute in
the background, as sync's state is (gateway/syncwatch.py), so Prometheus scrapes the gateways
alone and sees collection, what each repository holds, and how many images need their upstream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from gateway.metrics import GatewayMetrics
from gateway.storewatch import StoreWatch
from registry.gcstate import GCReport, load_gc_report
from registry.store import ObjectStore
from registry.store.errors import StoreError

logger = logging.getLogger("regfront.gateway")

Samples = Iterable[tuple[dict[str, str], float]]


class GCWatch(StoreWatch):
    def __init__(self, store: ObjectStore, metrics: GatewayMetrics) -> None:
        self.store = store
        self.report: GCReport | None = None
        super().__init__()
        gauge = metrics.registry.gauge
        gauge("gc_last_success_age_seconds", "Seconds since the last garbage collection that "
              "succeeded (absent until one does)", (), self._age)
        gauge("gc_last_run_seconds", "Duration of the last garbage collection", (),
              lambda: self._one(lambda r: r.seconds))
        gauge("gc_failures", "Garbage collections in a row that failed (0 after a success)", (),
              lambda: self._one(lambda r: r.failures))
        gauge("gc_deleted_objects", "Objects the last garbage collection deleted, by kind (tag, "
              "referrer, revision, layer, blob)", ("kind",), self._deleted)
        gauge("gc_freed_bytes", "Bytes the last garbage collection freed, by repository",
              ("repository",), lambda: self._by_repository(lambda r: r.freed_bytes))
        gauge("gc_stored_bytes", "Bytes each repository's images hold, as of the last garbage "
              "collection", ("repository",), lambda: self._by_repository(lambda r: r.stored_bytes))
        gauge("exposed_images", "Images pulled in the last day that are not complete in the "
              "bucket: a pull needs their upstream (as of the last garbage collection)", (),
              lambda: self._one(lambda r: r.exposed))

    def _age(self) -> Samples:
        if self.report is not None and self.report.last_success is not None:
            yield {}, time.time() - self.report.last_success

    def _one(self, read: Callable[[GCReport], float]) -> Samples:
        if self.report is not None:
            yield {}, float(read(self.report))

    def _deleted(self) -> Samples:
        if self.report is not None:
            for kind, count in self.report.deleted.items():
                yield {"kind": kind}, float(count)

    def _by_repository(self, read: Callable[[GCReport], dict[str, int]]) -> Samples:
        if self.report is not None:
            for name, value in read(self.report).items():
                yield {"repository": name}, float(value)

    async def refresh(self) -> None:
        try:
            self.report = await load_gc_report(self.store)
        except StoreError as exc:  # the store is down: keep the last report read
            logger.warning("reading the garbage collection report failed: %r", exc)
