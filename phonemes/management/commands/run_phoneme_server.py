"""`manage.py run_phoneme_server`: the reference phoneme service (espeak-ng) on HTTP/1.1."""

from django.core.management.base import BaseCommand, CommandError

from phonemes.server import G2PError, PhonemeService, serve

MAX_PORT = 65_535


class Command(BaseCommand):
    help = "Serve POST /phonemes {text, lang} -> {phonemes: [...]} with espeak-ng."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001, help="0 picks a free port.")
        parser.add_argument("--latency-ms", type=int, default=0, help="Delay every answer.")
        parser.add_argument(
            "--fail-first", type=int, default=0, help="Answer 503 to this many first requests."
        )

    def handle(self, *, host, port, latency_ms, fail_first, **options):
        if port < 0 or latency_ms < 0 or fail_first < 0:
            raise CommandError("--port, --latency-ms and --fail-first must be >= 0")
        if port > MAX_PORT:
            raise CommandError(f"--port must be from 0 to {MAX_PORT}, got {port}")
        try:
            service = PhonemeService(latency_ms=latency_ms, fail_first=fail_first)
            serve(service, host=host, port=port, on_ready=self._announce)
        except G2PError as e:
            raise CommandError(str(e)) from e
        except OSError as e:
            raise CommandError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
        except KeyboardInterrupt:
            pass

    def _announce(self, url):
        self.stdout.write(f"phoneme server listening on {url}")
        self.stdout.flush()
