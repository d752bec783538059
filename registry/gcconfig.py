"""The ``gc:`` section: when garbage collection runs, how long what it would delete waits first,
and what it keeps in repositories no mirror rule covers (docs/retention.md). Per-rule retention
is ``mirror[].retention`` (registry/mirrorconfig.py).
"""

from __future__ import annotations

from pydantic import Field

from registry.configtypes import Duration, StrictModel
from registry.mirrorconfig import Retention, Schedule

DAY = 86400.0


class GCConfig(StrictModel):
    # A tag no longer kept, and an object nothing kept references, goes only once two marks at
    # least this far apart both found it so (tests may set 0s: claims alone keep writers safe).
    grace: Duration = DAY
    # `regfront sync` (not --once) also collects garbage on this schedule; unset: only
    # `regfront gc` does.
    schedule: Schedule | None = None
    # Repositories no rule covers (imported, or a rule since removed): null keeps every tag.
    retention: Retention | None = Retention(pulled_within=30 * DAY, newest=3)
    # How long after announcing what it will delete GC waits before its last look at the
    # writers' claims: the longest a bucket listing may lag a write (docs/retention.md).
    settle: Duration = Field(default=30.0, ge=0)
    # Deletions announced by one run end this long after the settle; the rest wait for the
    # next run. Writers that touch an announced object wait at most this (plus clock_skew).
    sweep_budget: Duration = Field(default=900.0, gt=0)
    # Added to the announced deadline: clock differences between GC and writers, and a delete
    # already sent when the deadline passes.
    clock_skew: Duration = Field(default=30.0, ge=0)
    # Store calls in flight at once while marking and sweeping.
    concurrency: int = Field(default=16, ge=1, le=256)
