"""Merging the gateways' pull batches into one summary per day (garbage collection does it,
holding its lease, so no two merges race): retention then reads a month as 30 summaries and a
few recent batches, not tens of thousands of small objects."""

from __future__ import annotations

from collections import defaultdict

from lifecycle.inventory import Lister
from registry import layout
from registry.store import NotFound
from registry.usage import UsageBatch, day_batches, days_between, load_summary, merge

# A batch is merged once it is this old: by then every batch a gateway wrote before it is
# listed too (a gateway writes its batches one at a time), so a summary's marks are exact.
MERGE_AFTER = 900.0


async def compact(lister: Lister, now: float, keep: float) -> int:
    """Merge every batch older than ``MERGE_AFTER`` into its day's summary, then delete the
    batches merged; delete days older than ``keep`` seconds. Returns how many were merged."""
    store = lister.store
    recent = set(days_between(now - max(keep, 86400.0), now))
    merged = 0
    for day in sorted(await lister.children(layout.USAGE_ROOT)):
        if day not in recent:
            await _drop_day(lister, day)
            continue
        summary = await load_summary(store, day)
        batches = await day_batches(store, day)
        leftover = [b for b in batches if summary.includes(*b)]  # merged, then a crash
        ready = [b for b in batches if not summary.includes(*b) and b[0] <= now - MERGE_AFTER]
        for when, gateway in ready:
            try:
                data = await lister.get(layout.usage_record(day, when, gateway))
                merge(summary.pulls, UsageBatch.from_json(data).pulls)
            except NotFound:
                pass
            except (ValueError, KeyError, TypeError):
                pass  # a broken batch counts nothing, here as when read unmerged
        if ready:
            marks: dict[str, int] = defaultdict(lambda: -1, summary.merged)
            for when, gateway in ready:
                marks[gateway] = max(marks[gateway], when)
            summary.merged = dict(marks)
            # The summary first: a crash before the deletes leaves batches it already counts,
            # which its marks skip and the next merge deletes.
            await store.put(layout.usage_summary(day), summary.to_json())
        await lister.delete_many([layout.usage_record(day, w, g) for w, g in ready + leftover])
        merged += len(ready)
    return merged


async def _drop_day(lister: Lister, day: str) -> None:
    keys = []
    for entry in await lister.children(layout.usage_day_dir(day)):
        parsed = layout.parse_usage_record(entry)
        keys.append(layout.usage_record(day, *parsed) if parsed else layout.usage_summary(day))
    await lister.delete_many(keys)
