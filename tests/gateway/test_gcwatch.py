"""GC's report as the gateway's metrics (gateway/gcwatch.py): read from the bucket, exported
with the report's numbers, and the last one kept while the store fails."""

from __future__ import annotations

import time

from gateway.gcwatch import GCWatch
from gateway.metrics import GatewayMetrics
from registry.gcstate import GCReport, save_gc_report
from registry.store.errors import StoreUnreachable
from registry.store.memory import MemoryStore


def samples(metrics: GatewayMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class Down(MemoryStore):
    async def get(self, key: str) -> bytes:
        raise StoreUnreachable("refused")


async def test_the_report_is_exported_and_kept_while_the_store_fails() -> None:
    store, metrics = MemoryStore(), GatewayMetrics()
    watch = GCWatch(store, metrics)
    assert not [k for k in samples(metrics) if k[0].startswith("regfront_gc")]  # none yet
    report = GCReport(started=time.time() - 100, seconds=12.5, last_success=time.time() - 100,
                      deleted={"tag": 2, "blob": 7}, freed_bytes={"docker.io/library/app": 900},
                      stored_bytes={"docker.io/library/app": 5000}, failures=0, exposed=3)
    await save_gc_report(store, report)
    await watch.refresh()
    found = samples(metrics)
    assert found[("regfront_gc_last_run_seconds", ())] == 12.5
    assert found[("regfront_gc_deleted_objects", (("kind", "blob"),))] == 7
    assert found[("regfront_gc_stored_bytes", (("repository", "docker.io/library/app"),))] == 5000
    assert found[("regfront_gc_freed_bytes", (("repository", "docker.io/library/app"),))] == 900
    assert found[("regfront_exposed_images", ())] == 3
    assert 99 < found[("regfront_gc_last_success_age_seconds", ())] < 200
    watch.store = Down()
    await watch.refresh()
    assert samples(metrics)[("regfront_gc_deleted_objects", (("kind", "blob"),))] == 7
