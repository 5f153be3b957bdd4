"""A tiny OTLP/HTTP receiver on a loopback port: it keeps the spans every export POSTs to it."""

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class Receiver:
    """``with Receiver() as otlp:`` then point OTEL_EXPORTER_OTLP_ENDPOINT at ``otlp.url``."""

    def __init__(self):
        self.requests = []  # (path, content type, ExportTraceServiceRequest)
        self.received = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                export = ExportTraceServiceRequest.FromString(body)
                with receiver.received:
                    receiver.requests.append((self.path, self.headers["Content-Type"], export))
                    receiver.received.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def spans(self):
        """``(service name, span name, parent span name or None)`` of every span received."""
        found = []
        for _, _, export in self.requests:
            for resource_spans in export.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                spans = [s for scope in resource_spans.scope_spans for s in scope.spans]
                names = {s.span_id: s.name for s in spans}
                found += [
                    (attributes.get("service.name"), s.name, names.get(s.parent_span_id))
                    for s in spans
                ]
        return found

    def wait_for(self, name, timeout=30):
        """Wait until a span ``name`` has arrived; the spans received."""
        with self.received:
            self.received.wait_for(lambda: any(s[1] == name for s in self.spans()), timeout)
        return self.spans()
