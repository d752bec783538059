"""How a sync run tells people what it does: a rich progress display on a terminal, JSON lines
otherwise (a CronJob's log), and a summary at the end either way.

The summary's image counts add up: every image the run reported (one ``image`` event each) is
exactly one of copied (its tag moved), already current (its tag had not), pinned (a digest,
copied or already there) or failed - ``images`` is their sum. An image that some primary lacks
because that primary failed is failed.

With several primaries, each ``image`` event says which primaries have the image (``targets``:
label -> null, or why not), each ``rule`` event and the summary have each primary's own counts
(``targets``), and the run's ``bytes_downloaded`` is what crossed from the upstream, once for
all of them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from registry.digest import Digest
from registry.logs import iso_time
from sync.copier import CopyStats, Progress
from sync.targets import TargetStats
from sync.worker import Events, RuleResult


def _emit(stream: TextIO, event: str, **fields: Any) -> None:
    stream.write(json.dumps({"time": iso_time(time.time()), "event": event, **fields}) + "\n")
    stream.flush()


@dataclass
class Tally:
    """The images a run reported, by how each ended; per rule, and for the whole run."""

    digests: int = 0  # asked for by digest (rule digests, queued misses), and done
    failed: int = 0
    rules: dict[str, Tally] = field(default_factory=dict)

    def count(self, rule: str, image: str, error: str | None) -> None:
        for tally in (self, self.rules.setdefault(rule, Tally())):
            if error is not None:
                tally.failed += 1
            elif "@" in image:  # name@digest; a tag image is name:tag
                tally.digests += 1


def image_counts(stats: CopyStats, tally: Tally) -> dict[str, int]:
    """``images`` and the four ways one ends. A tag image that ended well is counted by the
    copier (moved: ``images``, or ``images_current``); digests and failures by the events."""
    parts = {"images_copied": stats.images, "images_current": stats.images_current,
             "images_pinned": tally.digests, "images_failed": tally.failed}
    return {"images": sum(parts.values()), **parts}


class Reporter(Events):
    """Events that keep the ``Tally`` the summary needs."""

    def __init__(self) -> None:
        self.tally = Tally()

    def image_done(self, rule: str, image: str, digest: Digest | None, error: str | None,
                   targets: Mapping[str, str | None]) -> None:
        self.tally.count(rule, image, error)


class JsonEvents(Reporter):
    """One JSON object per line: an image copied or failed, a rule finished."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        super().__init__()
        self.stream = stream

    def image_done(self, rule: str, image: str, digest: Digest | None, error: str | None,
                   targets: Mapping[str, str | None]) -> None:
        super().image_done(rule, image, digest, error, targets)
        _emit(self.stream, "image", rule=rule, image=image,
              digest=str(digest) if digest else None, error=error, targets=dict(targets))

    def rule_done(self, result: RuleResult) -> None:
        _emit(self.stream, "rule", rule=result.rule, skipped=result.skipped,
              seconds=round(result.seconds, 3), **_stats(result.stats),
              **image_counts(result.stats, self.tally.rules.get(result.rule, Tally())),
              targets={label: asdict(stats) for label, stats in result.targets.items()})


class _Bytes(Progress):
    def __init__(self, advance: Any) -> None:
        self._advance = advance

    def advance(self, nbytes: int) -> None:
        self._advance(nbytes)


class RichEvents(Reporter):
    """A live display: bytes downloaded so far, and a line per image as it completes."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TransferSpeedColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        self.console = Console(stderr=True)
        self.display = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                    DownloadColumn(), TransferSpeedColumn(),
                                    console=self.console, transient=True)
        self.task = self.display.add_task("downloading", total=None)
        self.progress = _Bytes(lambda n: self.display.advance(self.task, n))
        self.display.start()

    def image_done(self, rule: str, image: str, digest: Digest | None, error: str | None,
                   targets: Mapping[str, str | None]) -> None:
        super().image_done(rule, image, digest, error, targets)
        if error:
            self.console.print(f"[red]✗[/red] {image} [dim]({rule})[/dim]: {error}")
        else:
            self.console.print(f"[green]✓[/green] {image} [dim]{digest} ({rule})[/dim]")

    def rule_done(self, result: RuleResult) -> None:
        if result.skipped:
            self.console.print(f"[yellow]-[/yellow] rule {result.rule}: {result.skipped}")

    def stop(self) -> None:
        self.display.stop()


def _stats(stats: CopyStats) -> dict[str, Any]:
    """The copier's counts, but its image counts: ``image_counts`` says those, adding up."""
    counts = asdict(stats)
    del counts["images"], counts["images_current"]
    return counts


def summary(results: Sequence[RuleResult], seconds: float, tally: Tally) -> dict[str, Any]:
    """The run in numbers: what was copied, what was already there, what failed and why."""
    total = CopyStats()
    targets: dict[str, TargetStats] = {}
    for result in results:
        total.add(result.stats)
        for label, stats in result.targets.items():
            targets.setdefault(label, TargetStats()).add(stats)
    return {
        "rules": len(results),
        "rules_skipped": [r.rule for r in results if r.skipped],
        "seconds": round(seconds, 3),
        "mb_per_second": round(total.bytes_downloaded / 1e6 / seconds, 2) if seconds else None,
        **image_counts(total, tally),
        **_stats(total),
        "targets": {label: asdict(stats) for label, stats in targets.items()},
    }


def print_summary(data: dict[str, Any], *, terminal: bool, stream: TextIO = sys.stdout) -> None:
    if not terminal:
        _emit(stream, "summary", **data)
        return
    lines = [
        f"images {data['images']}: copied {data['images_copied']}, already current "
        f"{data['images_current']}, by digest {data['images_pinned']}, failed "
        f"{data['images_failed']}; manifests {data['manifests']}, blobs {data['blobs']} "
        f"(already present {data['blobs_present']})",
        f"downloaded {data['bytes_downloaded'] / 1e6:.1f} MB in {data['seconds']:.1f} s, "
        f"skipped {data['bytes_present'] / 1e6:.1f} MB already in the bucket",
    ]
    targets = data.get("targets", {})
    if len(targets) > 1:  # one primary: the lines above are its
        lines += [_target_line(label, stats) for label, stats in targets.items()]
    lines += [f"skipped rule {rule}: another worker holds it" for rule in data["rules_skipped"]]
    lines += [f"FAILED {failure}" for failure in data["failures"]]
    stream.write("\n".join(lines) + "\n")


def _target_line(label: str, stats: dict[str, Any]) -> str:
    state = f"FAILED: {stats['failures'][0]}" if stats["failures"] else "complete"
    return (f"  {label}: images copied {stats['images']}, current {stats['images_current']}, "
            f"failed {stats['images_failed']}; wrote {stats['blobs']} blobs "
            f"({stats['bytes_written'] / 1e6:.1f} MB, {stats['bytes_refilled'] / 1e6:.1f} MB of "
            f"them from another primary); {state}")
