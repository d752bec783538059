"""Sync's health as the gateway's metrics: each rule's state object (written by the sync
worker in the primary store, registry/syncstate.py) is re-read every minute in the background
(through the ``StoreSet``: a ``guarded`` store), so Prometheus scrapes one kind of target - the
gateways - and sees whether sync keeps up."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from gateway.metrics import GatewayMetrics
from gateway.storewatch import StoreWatch
from registry.store import ObjectStore
from registry.store.errors import StoreError
from registry.syncstate import RuleState, load_state

logger = logging.getLogger("regfront.gateway")


class SyncWatch(StoreWatch):
    def __init__(self, store: ObjectStore, rules: list[str], metrics: GatewayMetrics) -> None:
        self.store = store
        self.rules = rules
        self.states: dict[str, RuleState] = {}
        super().__init__()
        metrics.registry.gauge(
            "sync_last_success_age_seconds", "Seconds since the rule's last run without "
            "failures (absent until one succeeds)", ("rule",), self._ages)
        metrics.registry.gauge(
            "sync_last_run_seconds", "Duration of the rule's last run", ("rule",),
            lambda: self._field("last_seconds"))
        metrics.registry.gauge(
            "sync_last_run", "The last run's counts by rule and kind (images, blobs, "
            "blobs_present, bytes_downloaded, bytes_present, failures)", ("rule", "kind"),
            self._counts)

    def _ages(self) -> Iterable[tuple[dict[str, str], float]]:
        now = time.time()
        for rule, state in self.states.items():
            if state.last_success is not None:
                yield {"rule": rule}, now - state.last_success

    def _field(self, name: str) -> Iterable[tuple[dict[str, str], float]]:
        for rule, state in self.states.items():
            value = getattr(state, name)
            if value is not None:
                yield {"rule": rule}, float(value)

    def _counts(self) -> Iterable[tuple[dict[str, str], float]]:
        for rule, state in self.states.items():
            for kind, value in state.last_counts.items():
                yield {"rule": rule, "kind": kind}, float(value)

    async def refresh(self) -> None:
        for rule in self.rules:
            try:
                self.states[rule] = await load_state(self.store, rule)
            except StoreError as exc:  # the store is down: keep the last known state
                logger.warning("reading sync state of rule %s failed: %r", rule, exc)
