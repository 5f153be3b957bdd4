"""The phoneme similarity JSON API, for the robot service: one POST, one service call.

Answers with a ``Server-Timing`` header, and every error as JSON ``{"error": ...}``: 400 bad
input, 405 not a POST, 413 a body over DATA_UPLOAD_MAX_MEMORY_SIZE, 502 the service answered
with an error, 503 with ``Retry-After`` when every pooled connection stayed busy for the
request's queue time, when the service does not answer (down, restarting, timed out) and when
the cache's database does not.
"""

import logging
import time

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from phonemes.client import PhonemeServiceBusy, PhonemeServiceError
from phonemes.services import phoneme_similarity

log = logging.getLogger(__name__)
# Seconds a caller waits before it tries again after a 503: a service or database restarting.
RETRY_AFTER = 1


@csrf_exempt  # machine-to-machine: the robot service posts JSON, it holds no CSRF cookie
def similarity(request):
    started = time.perf_counter()
    response = score_pair(request)
    response["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.3f}"
    return response


def score_pair(request):
    if request.method != "POST":
        response = error(405, f"method {request.method} not allowed: POST a JSON object")
        response["Allow"] = "POST"
        return response
    try:
        body = parse_json(request.body)
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object {text_1, text_2, lang}")
        result = phoneme_similarity(body.get("text_1"), body.get("text_2"), body.get("lang", "en"))
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return error(413, f"request body is larger than the {limit} bytes accepted")
    except ValueError as e:
        return error(400, str(e))
    except PhonemeServiceBusy as e:
        return unavailable(str(e), e.retry_after)
    except PhonemeServiceError as e:
        if e.status is None:  # no answer at all: the service is down or restarting
            log.warning("phoneme similarity: %s", e)
            return unavailable(str(e), RETRY_AFTER)
        # The service refusing the text (an unknown language) is the caller's mistake.
        return error(400 if e.status == 400 else 502, str(e))
    except DatabaseError as e:
        # The cache's second tier: the details name a server, the log keeps them.
        log.warning("phoneme similarity: the cache database failed: %s", e)
        return unavailable("the phoneme cache's database is unavailable, try again", RETRY_AFTER)
    except Exception:
        # The robot service parses every answer as JSON, a failure included.
        log.exception("phoneme similarity failed")
        return error(500, "internal error")
    return JsonResponse(
        {
            "score": result.score,
            "phonemes_1": result.phonemes_1,
            "phonemes_2": result.phonemes_2,
            "cached": result.cached,
        }
    )


def error(status, message):
    return JsonResponse({"error": message}, status=status)


def unavailable(message, retry_after):
    response = error(503, message)
    response["Retry-After"] = str(retry_after)
    return response


def parse_json(raw):
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"body is not JSON: {e}") from e
