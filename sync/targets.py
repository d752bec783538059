"""The stores one sync run writes to: every primary (``storage:`` entries marked ``primary``, one
per cloud; the last entry when none is), each with its own counts and its own fate.

A target that fails a write (a store error, or a stall: sync/fanout.py) while others are still
in the run is out for the rest of the rule's run, with the reason recorded: the others go on,
and the next run completes it - from a target that has the content, not from the upstream
(sync/fanout.py). Trying a store that just failed again and again would put every later image
behind its timeouts. The last target left is never taken out: a failure there fails the image
only, and the next image tries again, as a single primary always did.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields

from registry.claims import Claims, claims_for
from registry.digest import Digest
from registry.store import ObjectStore
from registry.store.errors import StoreError
from registry.urls import redact

logger = logging.getLogger("regfront.sync")


class TargetStalled(Exception):
    """A target stopped taking a blob's bytes while others were waiting for it."""


@dataclass
class TargetStats:
    """What one rule's run did to one target; summed per target across rules for the summary."""

    images: int = 0  # tags moved here
    images_current: int = 0  # tags already at the upstream's digest here
    images_failed: int = 0  # images this target does not have because of a failure
    manifests: int = 0
    blobs: int = 0  # blobs written here, from the upstream or from another target
    bytes_written: int = 0
    blobs_refilled: int = 0  # of those, read from another target instead of the upstream
    bytes_refilled: int = 0
    blobs_present: int = 0
    bytes_present: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, other: TargetStats) -> None:
        for item in fields(self):
            if item.name != "failures":
                setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))
        self.failures += other.failures

    def counts(self) -> dict[str, int]:
        """The numbers alone (what the state object keeps and gateways export)."""
        return {item.name: getattr(self, item.name) for item in fields(self)
                if item.name != "failures"}


class Target:
    """One store a run writes to: its label (the URL without options or secrets), and whether
    it is still in the run."""

    def __init__(self, store: ObjectStore, label: str | None = None) -> None:
        self.store = store
        self.label = label or redact(store.url)
        self.down: str | None = None  # why it is out of this run
        self.stats = TargetStats()
        self.seen: set[Digest] = set()  # blobs counted for this target already

    @property
    def claims(self) -> Claims:
        return claims_for(self.store)

    def __repr__(self) -> str:
        return f"Target({self.label!r}{', down' if self.down else ''})"

    @property
    def live(self) -> bool:
        return self.down is None

    def fail(self, reason: str) -> None:
        """Take the target out of the run (the first reason is the one kept)."""
        if self.down is None:
            self.down = reason
            self.stats.failures.append(reason)
            logger.error("target %s: %s; it is out of this run, the others go on",
                         self.label, reason)



class Targets:
    """The targets of one rule's run, in ``storage:`` order (the first holds the lease)."""

    def __init__(self, stores: Sequence[ObjectStore]) -> None:
        self.all: list[Target] = []
        for store in stores:  # labels made unique: two options of one bucket, in tests
            label, number = redact(store.url), 2
            while label in {t.label for t in self.all}:
                label, number = f"{redact(store.url)}#{number}", number + 1
            self.all.append(Target(store, label))

    def __iter__(self) -> Iterator[Target]:
        return iter(self.all)

    def live(self) -> list[Target]:
        return [t for t in self.all if t.live]

    def failed(self, target: Target, what: str, error: BaseException) -> None:
        """``target`` failed ``what``: out of the run if another target is still in it, else
        ``error`` is raised (the image fails). Errors that are no store's failure pass."""
        if not isinstance(error, StoreError | TargetStalled):
            raise error
        if not target.live:
            return
        if self.live() == [target]:
            raise error
        target.fail(f"{what}: {type(error).__name__}: {error}")

    @contextlib.contextmanager
    def failing(self, target: Target, what: str) -> Iterator[None]:
        """A store failure in the block is ``target``'s (``failed``); anything else (a lost
        lease, a bug) passes through."""
        try:
            yield
        except (StoreError, TargetStalled) as exc:
            self.failed(target, what, exc)
