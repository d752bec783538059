"""The load generators: wrk for GETs, hey for HEADs (wrk stalls on HEAD), on the load core.

wrk does not follow redirects, so a 307 is counted as an answer; its "Non-2xx or 3xx responses"
counts only statuses >= 400, and any of those fails the measurement. hey must see only the
expected status. Both report requests/s and latency percentiles, normalised here to seconds.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass

from bench.common import ACCEPT, LOAD_CPU, Json, pinned

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


class LoadError(RuntimeError):
    """The load generator saw answers other than the expected ones, or failed."""


@dataclass(frozen=True)
class Sample:
    """One timed run: throughput and latency percentiles (seconds)."""

    rps: float
    p50: float
    p99: float
    requests: int

    def to_json(self) -> Json:
        return asdict(self)


def _seconds(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise LoadError(f"wrk: unreadable latency {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def parse_wrk(out: str) -> Sample:
    """requests/s, p50 and p99 from ``wrk --latency``; any answer >= 400 or socket error fails."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    if rate is None or total is None or p50 is None or p99 is None:
        raise LoadError(f"wrk: unexpected output:\n{out}")
    if bad is not None or (errors is not None and any(int(n) for n in errors.groups())):
        raise LoadError(f"wrk: error answers or socket errors:\n{out}")
    return Sample(float(rate.group(1)), _seconds(p50.group(1)), _seconds(p99.group(1)),
                  int(total.group(1)))


def parse_hey(out: str, status: int = 200) -> Sample:
    """requests/s, p50 and p99 from hey's summary; every answer must be ``status``."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%+ in ([\d.]+) secs", out)
    # Under 100 answers hey prints no 99% line ("0% in 0.0000 secs"): the slowest is then
    # the 99th percentile by nearest rank.
    p99 = re.search(r"99%+ in ([\d.]+) secs", out) or re.search(r"Slowest:\s+([\d.]+) secs",
                                                                  out)
    codes = dict(re.findall(r"^\s+\[(\d{3})\]\s+(\d+) responses", out, re.MULTILINE))
    if rate is None or p50 is None or p99 is None or set(codes) != {str(status)}:
        raise LoadError(f"hey: unexpected answers (want only {status}):\n{out}")
    return Sample(float(rate.group(1)), float(p50.group(1)), float(p99.group(1)),
                  int(codes[str(status)]))


def wrk(url: str, connections: int, seconds: float, *, script: str | None = None,
        accept: str = ACCEPT) -> Sample:
    """GETs for ``seconds`` over ``connections`` keep-alive connections, one wrk thread."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
            "--timeout", "10s", "-H", f"Accept: {accept}", url]
    if script is not None:
        argv[1:1] = ["-s", script]
    result = subprocess.run(pinned(LOAD_CPU, argv), capture_output=True, text=True,
                            timeout=seconds + 60, check=False)
    if result.returncode != 0:
        raise LoadError(f"wrk exited {result.returncode}: {result.stderr}{result.stdout}")
    return parse_wrk(result.stdout)


def hey(url: str, connections: int, seconds: float, *, method: str = "HEAD",
        status: int = 200) -> Sample:
    """``method`` requests for ``seconds`` from ``connections`` workers, one core."""
    argv = ["hey", "-m", method, "-c", str(connections), "-z", f"{max(1, round(seconds))}s",
            "-cpus", "1", "-t", "10", "-disable-redirects", "-H", f"Accept: {ACCEPT}", url]
    result = subprocess.run(pinned(LOAD_CPU, argv), capture_output=True, text=True,
                            timeout=seconds + 60, check=False)
    if result.returncode != 0:
        raise LoadError(f"hey exited {result.returncode}: {result.stderr}{result.stdout}")
    return parse_hey(result.stdout, status)
