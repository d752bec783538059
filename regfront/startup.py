"""What ``serve`` and ``sync`` find out before they start work: whether the address is free,
whether the stores answer. Each finding is one line naming what, why and the fix."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import threading
from collections.abc import Sequence

from regfront.failures import describe_store, explain_store
from registry import layout
from registry.errors import ConfigError
from registry.store import NotFound, open_store
from registry.store.errors import StoreError, StoreTimeout

logger = logging.getLogger("regfront")

_BIND_ERRORS = {
    errno.EADDRINUSE: "address already in use (another regfront, or another program)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address",
}


def check_listen(host: str, port: int, set_by: str) -> None:
    """Bind ``host:port`` and let it go again, so a busy port fails here, in one line, before
    anything claims to serve; ``set_by`` names where the address came from and how to change it.
    The same options as uvicorn's bind (SO_REUSEADDR), so what passes here binds there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror as error:
            raise ConfigError(f"cannot listen on {shown}: host not resolved ({error.strerror})"
                              f" - fix: {set_by}") from None
        except OSError as error:
            why = _BIND_ERRORS.get(error.errno or 0, error.strerror or str(error))
            raise ConfigError(f"cannot listen on {shown}: {why} - fix: {set_by}") from None


def check_tls(cert: str, key: str) -> None:
    """Load the certificate and key as uvicorn will, so a bad pair is one line now rather than
    an SSL error out of the server's start."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        raise ConfigError(f"tls_cert {cert} and tls_key {key}: cannot be loaded as a PEM "
                          f"certificate chain and its private key ({error})") from None


async def reach_store(url: str, budget: float) -> StoreError | None:
    """One read of a key nobody writes: None when the store answered (absent is an answer)."""
    store = open_store(url)
    try:
        async with asyncio.timeout(budget):
            await store.size(layout.WARM_UP)
    except NotFound:
        return None
    except StoreError as error:
        return error
    except TimeoutError:
        return StoreTimeout(f"no answer within {budget:g} s")
    finally:
        await store.close()
    return None


def require_store(url: str, budget: float, doing: str) -> None:
    """Raise ``ConfigError`` naming the store, why and the fix unless it answers now."""
    error = asyncio.run(reach_store(url, budget))
    if error is not None:
        raise ConfigError(explain_store(url, error, doing))


def report_stores(urls: Sequence[str], budget: float) -> threading.Thread:
    """Log, beside the server's start, whether each store answers; the server does not wait:
    a store may come later, and a cold start (Cloud Run) must not pay for this."""
    async def probe_all() -> None:
        errors = await asyncio.gather(*(reach_store(url, budget) for url in urls))
        for url, error in zip(urls, errors, strict=True):
            if error is None:
                logger.info("%s answers", describe_store(url))
            else:
                logger.warning("%s", explain_store(url, error, "read"))

    thread = threading.Thread(target=asyncio.run, args=(probe_all(),), name="store-report",
                              daemon=True)
    thread.start()
    return thread
