"""Reading a cloud store URL, ``scheme://container[/prefix][?name=value&...]``, for the s3://,
gs:// and az:// stores: any mistake is one ``ConfigError`` line naming the URL and what is wrong.

Each store declares its options as a table (name -> how to convert, when the value is
acceptable, what it must be).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from registry.errors import ConfigError
from registry.store import check_key

# (convert, valid, what it must be)
Option = tuple[Callable[[str], Any], Callable[[Any], object], str]


def is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


HTTP_URL: Option = (str, is_http_url, "must be an http:// or https:// URL")
SECONDS: Option = (float, lambda s: math.isfinite(s) and s > 0,
                   "must be a positive number of seconds")
AT_LEAST_ONE: Option = (int, lambda n: n >= 1, "must be a whole number, at least 1")

# How every cloud store talks to its endpoint unless its URL says otherwise.
DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 3
# botocore's default is 10: a burst of cold requests (20 nodes asking for a new image's layers)
# then queues for a connection and times out in the queue, however healthy the bucket is.
DEFAULT_MAX_POOL_CONNECTIONS = 64


@dataclass(frozen=True)
class StoreURL:
    container: str  # the bucket (gs://) or container (az://)
    prefix: str
    options: dict[str, Any]


def parse_store_url(url: str, scheme: str, container: re.Pattern[str], container_word: str,
                    options: Mapping[str, Option]) -> StoreURL:
    """Split ``url`` into container, key prefix and converted, validated options."""
    shape = f"{scheme}://{container_word}[/prefix]"

    def bad(why: str) -> ConfigError:
        return ConfigError(f"storage url {url!r}: {why}")

    parts = urlsplit(url)
    if parts.scheme != scheme:
        raise bad(f"expected {shape}")
    if not container.fullmatch(parts.netloc):
        raise bad(f"expected {shape} with a valid {container_word} name")
    if parts.fragment:
        raise bad("a storage url has no #fragment")
    prefix = parts.path.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except ValueError:
            raise bad(f"prefix {prefix!r} has empty, '.' or '..' segments") from None

    values: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in options:
            close = difflib.get_close_matches(name, sorted(options), n=1, cutoff=0.75)
            raise bad(f"unknown option {name!r}" + (f" (did you mean {close[0]}?)" if close
                                                     else f"; options: {', '.join(options)}"))
        if name in values:
            raise bad(f"{name} is given twice")
        convert, valid, why = options[name]
        try:
            values[name] = convert(value)
        except ValueError:
            raise bad(f"{name} {why}") from None
        if not valid(values[name]):
            raise bad(f"{name} {why}")
    return StoreURL(parts.netloc, prefix, values)
