"""What the systems around the gateway say happened, read from their own records: the gateway's
/metrics, the upstream registry:2's access log, the bucket's (moto's) request log.

A benchmark counts outcomes here, never a line the gateway logs: the fallbacks and 5xx the
gateway counted in /metrics, the requests that reached the upstream and the bytes it sent as
the upstream recorded them, and the bucket's answers as the bucket recorded them.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Json

# name{label="value",...} value  (Prometheus text format; label values here hold no quotes)
_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
# registry:2's access log: Apache combined format (gorilla/handlers), one line per request.
_COMBINED = re.compile(r'^\S+ \S+ \S+ \[(?P<when>[^]]+)\] '
                       r'"(?P<method>[A-Z]+) (?P<target>\S+) [^"]*" (?P<status>\d{3}) '
                       r'(?P<bytes>\d+|-) "[^"]*" "(?P<agent>[^"]*)"')
# werkzeug's request log (moto), status coloured with ANSI codes.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_WERKZEUG = re.compile(r'^\S+ - - \[[^]]+\] "(?P<method>[A-Z]+) (?P<target>\S+) [^"]*" '
                       r'(?P<status>\d{3}) ')
_API = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<reference>[^/?]+)")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a server's ``/metrics``; empty when it has none (registry:2)."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            text = response.read().decode()
    except urllib.error.HTTPError:
        return {}
    samples: Samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = frozenset(_LABEL.findall(match["labels"] or ""))
        samples[(match["name"], labels)] = float(match["value"])
    return samples


def grew(before: Samples, after: Samples, name: str, *by: str) -> dict[str, int]:
    """How much counter ``name`` grew between two scrapes, by the labels ``by`` (joined with
    ' '); only the label sets that grew."""
    out: Counter[str] = Counter()
    for (sample, labels), value in after.items():
        if sample != name:
            continue
        delta = value - before.get((sample, labels), 0.0)
        if delta > 0:
            named = dict(labels)
            out[" ".join(named.get(label, "-") for label in by)] += int(delta)
    return dict(sorted(out.items()))


def latency(before: Samples, after: Samples, name: str, by: str) -> dict[str, Json]:
    """A histogram's growth between two scrapes, by label ``by``: how many were observed, how
    many took over 0.1, 1 and 2.5 seconds, and the bucket bound the slowest fell under."""
    cumulative: dict[str, dict[float, float]] = {}
    for (sample, labels), value in after.items():
        if sample != f"{name}_bucket":
            continue
        named = dict(labels)
        bound = float(named["le"])  # "+Inf" parses as inf
        cumulative.setdefault(named.get(by, "-"), {})[bound] = (
            value - before.get((sample, labels), 0.0))
    out: dict[str, Json] = {}
    for group, counts in sorted(cumulative.items()):
        total = counts.get(float("inf"), 0.0)
        if not total:
            continue
        bounds = sorted(counts)
        out[group] = {
            "count": int(total),
            **{f"over_{limit:g}s": int(total - counts.get(limit, 0.0))
               for limit in (0.1, 1.0, 2.5)},
            "slowest_under_s": next((b for b in bounds if counts[b] >= total
                                     and b != float("inf")), None),
        }
    return out


def gateway_outcomes(before: Samples, after: Samples) -> Json:
    """What the gateway counted between two scrapes: fallbacks by reason, answers by route and
    status, 5xx by status, and store calls that did not answer ok, by operation and outcome."""
    answers = grew(before, after, "regfront_http_requests_total", "route", "status")
    fivexx: Counter[str] = Counter()
    for key, count in answers.items():
        route, status = key.split(" ")
        if status.startswith("5"):
            fivexx[f"{route} {status}"] += count
    calls = grew(before, after, "regfront_store_calls_total", "operation", "outcome")
    return {
        "fallbacks": grew(before, after, "regfront_fallbacks_total", "reason"),
        "answers": answers,
        "5xx": dict(fivexx),
        "store_calls": calls,
        "store_calls_failed": {k: v for k, v in calls.items()
                               if not k.endswith((" ok", " not_found"))},
        # How long answers and store calls took (the gateway's histograms).
        "answer_seconds": latency(before, after, "regfront_http_request_duration_seconds",
                                  "route"),
        "store_call_seconds": latency(before, after, "regfront_store_call_duration_seconds",
                                      "store"),
    }


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    status: int
    bytes: int
    agent: str
    when: str = ""

    @property
    def api(self) -> tuple[str, str] | None:
        """(kind, reference) for a manifest or blob request."""
        match = _API.match(self.target)
        return (match["kind"], match["reference"]) if match else None


@dataclass
class LogTail:
    """A server's log file read from where it stood when the tail was made."""

    path: Path
    offset: int = field(init=False)

    def __post_init__(self) -> None:
        self.offset = self.path.stat().st_size

    def lines(self) -> list[str]:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            text = log.read().decode("utf-8", "replace")
        return text.splitlines()


def access_log(lines: list[str]) -> list[Request]:
    """registry:2's access-log lines (its other log lines skipped)."""
    out = []
    for line in lines:
        match = _COMBINED.match(line)
        if match is not None:
            size = 0 if match["bytes"] == "-" else int(match["bytes"])
            out.append(Request(match["method"], match["target"], int(match["status"]), size,
                               match["agent"], match["when"]))
    return out


def upstream_outcomes(requests: list[Request], unique: dict[str, int]) -> Json:
    """What reached the upstream: every request and the body bytes it sent, blob GETs by digest
    (each blob's share of the fleet's unique bytes named)."""
    blobs: Counter[str] = Counter()
    blob_bytes = 0
    kinds: Counter[str] = Counter()
    for request in requests:
        api = request.api
        kind = api[0] if api else "other"
        kinds[f"{request.method} {kind} {request.status}"] += 1
        if api and kind == "blobs" and request.method == "GET":
            blobs[api[1]] += 1
            blob_bytes += request.bytes
    return {
        "requests": len(requests),
        "bytes": sum(r.bytes for r in requests),
        "by_kind": dict(sorted(kinds.items())),
        "blob_gets": sum(blobs.values()),
        "blob_bytes": blob_bytes,
        "blobs": {digest: {"gets": count, "size": unique.get(digest)}
                  for digest, count in sorted(blobs.items())},
        "agents": dict(Counter(r.agent.split(" ")[0] for r in requests)),
        # The first blob GETs as logged: when, which, how much - where to start looking.
        "blob_log": [f"{r.when} {r.method} {r.target.split('?')[0][-80:]} {r.status} {r.bytes}"
                     for r in requests if r.api and r.api[0] == "blobs"][:40],
    }


def bucket_outcomes(lines: list[str]) -> Json:
    """The bucket's answers as it logged them, by method and status."""
    answers: Counter[str] = Counter()
    for line in lines:
        match = _WERKZEUG.match(_ANSI.sub("", line))
        if match is not None:
            answers[f"{match['method']} {match['status']}"] += 1
    return dict(sorted(answers.items()))
