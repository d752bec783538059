"""Value types shared by every section of the config file."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class StrictModel(BaseModel):
    """Unknown keys are errors; values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Go-style string (``500ms``, ``90s``, ``15m``, ``1h30m``)."""
    if isinstance(value, bool):
        raise ValueError("invalid duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value and _DURATION_PART.sub("", value.strip()) == "":
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    else:
        raise ValueError(f"invalid duration {value!r} (use e.g. 500ms, 30s, 15m, 1h)")
    if seconds < 0:
        raise ValueError("duration must not be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
