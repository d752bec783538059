"""Reading a file that holds a secret (a token, a password, an htpasswd list): the one place a
missing or unreadable one becomes a config error naming the setting, the path and why."""

from __future__ import annotations

from pathlib import Path

from registry.errors import ConfigError


def read_secret_file(path: str | Path, setting: str) -> str:
    """The file's text; ``ConfigError("SETTING: PATH: cannot read: WHY")`` if it cannot be read.

    The message never carries the file's content.
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{setting}: {path}: cannot read: {reason}") from None
