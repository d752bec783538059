"""Garbage collection on ``gc.schedule``, beside the sync worker's rules (``regfront sync``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from lifecycle.gc import Collector
from registry.config import Config
from registry.store import ObjectStore
from sync.schedule import schedule_for

logger = logging.getLogger("regfront.gc")


async def collect_forever(config: Config, stores: Sequence[ObjectStore], *,
                          sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
    """Collect each of ``stores`` (the primaries) at every time ``gc.schedule`` names (never,
    without one); a failed run is logged and recorded in that store's GC report, and the next
    one runs on time."""
    import asyncio

    schedule = schedule_for(config.gc.schedule)
    if schedule is None:
        return
    wait = sleep or asyncio.sleep
    while True:
        now = datetime.now(UTC)
        await wait((schedule.next_after(now) - now).total_seconds())
        for store in stores:
            try:
                report, _ = await Collector(config, store).run()
            except Exception:  # recorded in the report by the collector; the worker goes on
                logger.exception("garbage collection of %s failed", store.url.split("?")[0])
                continue
            logger.info("garbage collection of %s: %s", store.url.split("?")[0], report.error or (
                f"deleted {sum(report.deleted.values())} objects, "
                f"{report.bytes_freed} bytes, in {report.seconds:.1f}s"))
