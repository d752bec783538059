"""What the upstream client (registry/upstream/client.py and session.py) raises.

Exceptions::

    UpstreamError              one line naming the registry and URL; ``status`` if an HTTP answer
    +-- UpstreamAuthError      credentials missing, unreadable or refused; access denied
    +-- UpstreamNotFound       404: no such manifest, blob or repository
    +-- UpstreamUnavailable    every URL failed: connection errors, timeouts, 5xx, 429 after retries

    TransientError             internal: one attempt failed in a way worth retrying; never
                               escapes the client, which retries it and, when every URL has
                               failed, raises UpstreamUnavailable instead
"""

from __future__ import annotations


class UpstreamError(Exception):
    """A failure talking to one upstream; ``str()`` is one line naming its registry and URL."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UpstreamAuthError(UpstreamError):
    """Credentials missing, unreadable or refused, or the upstream denies access."""


class UpstreamNotFound(UpstreamError):
    """The upstream answered 404 for the manifest, blob or repository."""


class UpstreamUnavailable(UpstreamError):
    """No URL answered: connection errors, timeouts, 5xx or 429, after every retry."""


class TransientError(Exception):
    """One attempt failed in a way worth retrying; ``retry_after`` is what the server asked."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
