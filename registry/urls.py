"""URLs as they may be shown in logs, metric labels and error messages."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit


def redact(url: str) -> str:
    """``url`` without its query, fragment or credentials: a store URL's options, a pre-signed
    URL's signature and a user:password never reach a log line or a label. A plain path (a file
    store) is shown as the path."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return str(Path(parts.path if parts.scheme else url))
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
