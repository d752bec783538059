"""How a sync run tells people what it does: a rich progress display on a terminal, JSON lines
otherwise (a CronJob's log), and a summary at the end either way."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TextIO

from registry.digest import Digest
from sync.copier import CopyStats, Progress
from sync.worker import Events, RuleResult


def _emit(stream: TextIO, event: str, **fields: Any) -> None:
    stream.write(json.dumps({"time": round(time.time(), 3), "event": event, **fields}) + "\n")
    stream.flush()


class JsonEvents(Events):
    """One JSON object per line: an image copied or failed, a rule finished."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream

    def image_done(self, rule: str, image: str, digest: Digest | None, error: str | None) -> None:
        _emit(self.stream, "image", rule=rule, image=image,
              digest=str(digest) if digest else None, error=error)

    def rule_done(self, result: RuleResult) -> None:
        _emit(self.stream, "rule", rule=result.rule, skipped=result.skipped,
              seconds=round(result.seconds, 3), **_stats(result.stats))


class _Bytes(Progress):
    def __init__(self, advance: Any) -> None:
        self._advance = advance

    def advance(self, nbytes: int) -> None:
        self._advance(nbytes)


class RichEvents(Events):
    """A live display: bytes downloaded so far, and a line per image as it completes."""

    def __init__(self) -> None:
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

    def image_done(self, rule: str, image: str, digest: Digest | None, error: str | None) -> None:
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
    return asdict(stats)


def summary(results: Sequence[RuleResult], seconds: float) -> dict[str, Any]:
    """The run in numbers: what was copied, what was already there, what failed and why."""
    total = CopyStats()
    for result in results:
        total.add(result.stats)
    return {
        "rules": len(results),
        "rules_skipped": [r.rule for r in results if r.skipped],
        "seconds": round(seconds, 3),
        "mb_per_second": round(total.bytes_downloaded / 1e6 / seconds, 2) if seconds else None,
        **_stats(total),
    }


def print_summary(data: dict[str, Any], *, terminal: bool, stream: TextIO = sys.stdout) -> None:
    if not terminal:
        _emit(stream, "summary", **data)
        return
    lines = [
        f"images copied {data['images']} (already current {data['images_current']}), "
        f"manifests {data['manifests']}, blobs {data['blobs']} "
        f"(already present {data['blobs_present']})",
        f"downloaded {data['bytes_downloaded'] / 1e6:.1f} MB in {data['seconds']:.1f} s, "
        f"skipped {data['bytes_present'] / 1e6:.1f} MB already in the bucket",
    ]
    lines += [f"skipped rule {rule}: another worker holds it" for rule in data["rules_skipped"]]
    lines += [f"FAILED {failure}" for failure in data["failures"]]
    stream.write("\n".join(lines) + "\n")
