"""OCI distribution error codes and the one exception type that carries them.

Every failure a client can see is a ``RegistryError``; the gateway renders it once, as
``{"errors": [{"code", "message", "detail"}]}`` with the code's HTTP status. Store-level
absence is ``registry.store.NotFound``, which callers translate into the right code.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.Enum):
    """The distribution-spec codes regfront emits, each with its HTTP status and message."""

    BLOB_UNKNOWN = (404, "blob unknown to registry")
    DIGEST_INVALID = (400, "provided digest did not match uploaded content")
    MANIFEST_INVALID = (400, "manifest invalid")
    MANIFEST_UNKNOWN = (404, "manifest unknown")
    NAME_INVALID = (400, "invalid repository name")
    NAME_UNKNOWN = (404, "repository name not known to registry")
    TAG_INVALID = (400, "manifest tag did not match URI")
    PAGINATION_NUMBER_INVALID = (400, "invalid number of results requested")
    RANGE_INVALID = (416, "invalid content range")
    SIZE_INVALID = (400, "provided length did not match content length")
    UNAUTHORIZED = (401, "authentication required")
    DENIED = (403, "requested access to the resource is denied")
    UNSUPPORTED = (405, "the operation is unsupported")
    NOT_FOUND = (404, "the requested endpoint does not exist")
    UNAVAILABLE = (503, "service unavailable")
    UNKNOWN = (500, "unknown error")  # distribution's code for a failure it did not expect
    TOOMANYREQUESTS = (429, "too many requests")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]


class RegistryError(Exception):
    """An error with an OCI code; ``detail`` is any JSON value that helps the client."""

    def __init__(self, code: ErrorCode, detail: Any = None, message: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.code = code
        self.headers = headers or {}
        self.detail = detail
        self.message = message or code.message
        super().__init__(f"{code.name}: {self.message}" + (f" ({detail})" if detail else ""))

    @property
    def status(self) -> int:
        return self.code.status

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code.name, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return entry


class ConfigError(Exception):
    """A configuration or command-line mistake, explained in one line naming its place; a file
    with several mistakes raises one ``ConfigError`` with a line for each (``problems``)."""

    def __init__(self, *problems: str) -> None:
        super().__init__(*problems)
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(self.problems)
