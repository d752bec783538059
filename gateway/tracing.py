"""Traces: a span per sampled request, with child spans per store and upstream call.

W3C trace context (``traceparent``) is accepted; sampling is parent-based with a configurable
ratio for requests that arrive without a sampled parent (low by default: the hot path serves
tens of thousands of requests a second). The unsampled majority costs one random draw: no span
object is made for them at all. Spans go to an OTLP endpoint when one is configured (or to any
exporter a test passes).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


class Tracing:
    def __init__(self, *, service_name: str, ratio: float, otlp_endpoint: str | None = None,
                 exporter: SpanExporter | None = None) -> None:
        self.ratio = ratio
        self.enabled = exporter is not None or otlp_endpoint is not None
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                                       sampler=ParentBased(TraceIdRatioBased(ratio)))
        if exporter is not None:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif otlp_endpoint is not None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")))
        self.tracer = self.provider.get_tracer("regfront.gateway")

    @contextlib.contextmanager
    def request(self, scope: MutableMapping[str, Any],
                route: str) -> Iterator[trace.Span | None]:
        """A server span for this request, if it is sampled (or has a sampled parent)."""
        parent = None
        for key, value in scope["headers"]:
            if key == b"traceparent":
                parent = _PROPAGATOR.extract({"traceparent": value.decode("latin-1")})
                break
        if parent is None and random.random() >= self.ratio:
            yield None
            return
        token = _TRACER.set(self.tracer)
        try:
            with self.tracer.start_as_current_span(
                    f"{scope['method']} {route}", context=parent, kind=trace.SpanKind.SERVER,
                    attributes={"http.request.method": scope["method"], "http.route": route,
                                "url.path": scope["path"]}) as span:
                yield span
        finally:
            _TRACER.reset(token)

    def shutdown(self) -> None:
        self.provider.shutdown()


@contextlib.contextmanager
def child_span(name: str, **attributes: str) -> Iterator[None]:
    """A child of the current request's span - only when that one is recording (else free)."""
    tracer = _TRACER.get()
    if tracer is None or not trace.get_current_span().is_recording():
        yield
        return
    with tracer.start_as_current_span(name, attributes=attributes):
        yield


# The tracer of the request being served: child spans use the same provider (the global one is
# never set, so several apps - tests - can run in one process).
_TRACER: ContextVar[trace.Tracer | None] = ContextVar("regfront_tracer", default=None)
