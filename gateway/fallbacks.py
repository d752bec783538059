"""Every answer that sends containerd away from the mirror, counted by reason and logged.

containerd moves to its next host - the upstream registry - on a 5xx and on a 404, per request
and on every node that gets one (it retries only 408 and 429 on the same host, answers the
gateway never gives). A 5xx always means the gateway failed; a 404 does in a repository a mirror
rule covers (content the fleet is meant to get from the bucket), and is the designed answer
elsewhere. Both kinds are counted in ``regfront_fallbacks_total{reason}`` and logged at most once
per reason every ``LOG_EVERY`` seconds, with how many were not logged since: a fleet-wide
fallback is thousands of answers a second, and the count, not the log, is the measure.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from starlette.types import Scope

from gateway.metrics import GatewayMetrics
from registry.errors import RegistryError
from registry.mirrorconfig import MirrorIndex

logger = logging.getLogger("regfront.gateway")

LOG_EVERY = 10.0
_REASON = re.compile(r"[a-z_]{1,40}")  # reasons are label values: a bounded vocabulary


class Fallbacks:
    def __init__(self, metrics: GatewayMetrics, mirrors: MirrorIndex, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.counts = metrics.fallbacks
        self.mirrors = mirrors
        self.clock = clock
        self._logged: dict[str, tuple[float, int]] = {}  # reason -> (last line, unlogged since)

    def answered(self, scope: Scope, error: RegistryError, name: str | None = None) -> None:
        """Count ``error`` if it sends containerd to its next host: any 5xx, and a 404 when
        ``name`` (the stored repository, on the hot path) is one a mirror rule covers."""
        status = error.status
        if status < 500 and not (status == 404 and name is not None and
                                 self.mirrors.covers(name)):
            return
        reason = error.code.name.lower()
        if status >= 500 and isinstance(error.detail, dict):
            given = error.detail.get("reason")
            if isinstance(given, str) and _REASON.fullmatch(given):
                reason = given
        self.counts[(reason,)] += 1
        self._log(reason, scope, status)

    def _log(self, reason: str, scope: Scope, status: int) -> None:
        now = self.clock()
        last, unlogged = self._logged.get(reason, (float("-inf"), 0))
        if now - last < LOG_EVERY:
            self._logged[reason] = (last, unlogged + 1)
            return
        self._logged[reason] = (now, 0)
        since = f"; {unlogged} more since the last such line" if unlogged else ""
        logger.warning("fallback (%s): %s %s answered %d, so containerd goes to the next host%s",
                       reason, scope["method"], scope["path"][:200], status, since,
                       extra={"fields": {"reason": reason, "status": status,
                                         "unlogged": unlogged}})
