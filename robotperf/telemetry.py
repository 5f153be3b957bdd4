"""OpenTelemetry: the store's spans exported over OTLP/HTTP when an endpoint is configured.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` unset nothing is made, and a store call makes no span at
all (convstore's tracing checks for an SDK provider). The exporter reads the standard OTEL_*
variables itself (endpoint, headers, timeout); ``OTEL_SERVICE_NAME`` defaults to robotperf.
"""

import os


def configure_tracing(environ=os.environ):
    """Set the process's tracer provider: the SDK's, with a batch processor and an OTLP/HTTP
    exporter; None when no endpoint is set. Called once at start, before any fork's child."""
    if not environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "robotperf"}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
