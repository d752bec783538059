"""How a store fails: one exception type per kind of failure, raised by every backend.

```
Exception
 +-- NotFound               the key is absent (registry.store): an answer, not a failure
 +-- PreconditionFailed     a conditional write lost (registry.store): an answer too
 +-- StoreError             the store could not answer
      +-- StoreTimeout        no answer in time (a hung endpoint, or one slow under load)
      +-- StoreThrottled      the store asked us to slow down (S3 503 SlowDown, 429)
      +-- StoreServerError    the store answered 5xx, or its disk failed
      +-- StoreUnreachable    connection refused or reset, name not resolved, host unreachable
      +-- StoreAccessDenied   credentials missing, expired or refused (401, 403)
      +-- StoreRejected       any other refusal: a missing bucket, a request it will not take
```

Backends map their libraries' exceptions to these by type (registry/store/s3.py, file.py); any
other exception out of a store is a bug. Two facts per kind steer the gateway (gateway/stores.py):
``retryable`` - asking again soon may work; ``hard`` - evidence the store itself is broken rather
than busy. Each kind's HTTP answer is chosen in one place: gateway/http.py.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
from collections.abc import Iterator
from typing import ClassVar


class StoreError(Exception):
    """The store could not answer; ``reason`` names the kind in answers, logs and metrics."""

    reason: ClassVar[str] = "store_error"
    retryable: ClassVar[bool] = True
    hard: ClassVar[bool] = True


class StoreTimeout(StoreError):
    reason = "store_timeout"
    hard = False  # under load a healthy store is slow too


class StoreThrottled(StoreError):
    reason = "store_throttled"
    hard = False  # alive, and telling us so


class StoreServerError(StoreError):
    reason = "store_server_error"


class StoreUnreachable(StoreError):
    reason = "store_unreachable"


class StoreAccessDenied(StoreError):
    reason = "store_access_denied"
    retryable = False  # nothing changes until someone fixes the credentials or the policy


class StoreRejected(StoreError):
    reason = "store_rejected"
    retryable = False


_UNREACHABLE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN,
                       errno.ENOTCONN, errno.ESTALE}


def from_os_error(error: OSError) -> StoreError:
    """The kind of an ``OSError`` out of a store: the standard library's I/O failures."""
    if isinstance(error, TimeoutError):
        return StoreTimeout(repr(error))
    if isinstance(error, PermissionError):
        return StoreAccessDenied(repr(error))
    if isinstance(error, ConnectionError | socket.gaierror) or error.errno in _UNREACHABLE_ERRNOS:
        return StoreUnreachable(repr(error))
    return StoreServerError(repr(error))  # EIO, ENOSPC and the like: the store's machinery


def connection_failure(error: BaseException) -> str | None:
    """How a connection failed - ``connection refused``, ``connection reset``, ``host name not
    resolved``, ``TLS failed: ...`` - from the OS error the HTTP libraries wrap (botocore ->
    aiohttp -> OSError); None if there is none. "Could not connect" alone does not tell a typo
    from a firewall."""
    cause: BaseException | None = error
    for _ in range(8):  # bounded: a cycle of causes must not hang an error message
        if cause is None:
            return None
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, socket.gaierror):
            return "host name not resolved"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause.reason or cause}"
        kwargs = getattr(cause, "kwargs", None)  # botocore keeps the cause here
        inner = kwargs.get("error") if isinstance(kwargs, dict) else None
        cause = (inner if isinstance(inner, BaseException) else None) or getattr(
            cause, "os_error", None) or cause.__cause__ or cause.__context__  # aiohttp: os_error
    return None


@contextlib.contextmanager
def os_failures() -> Iterator[None]:
    """An ``OSError`` leaving the block leaves as its store failure kind (``from_os_error``)."""
    try:
        yield
    except OSError as error:
        raise from_os_error(error) from error
