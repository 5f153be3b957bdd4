"""The phoneme similarity JSON API, for the robot service: one POST, one service call.

Answers with a ``Server-Timing`` header; 400 for bad input, 502 when the phoneme service fails.
"""

import time

import orjson
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from phonemes.client import PhonemeServiceError
from phonemes.services import phoneme_similarity


@csrf_exempt  # machine-to-machine: the robot service posts JSON, it holds no CSRF cookie
@require_POST
def similarity(request):
    started = time.perf_counter()
    try:
        body = parse_json(request.body)
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object {text_1, text_2, lang}")
        result = phoneme_similarity(body.get("text_1"), body.get("text_2"), body.get("lang", "en"))
    except ValueError as e:
        response = JsonResponse({"error": str(e)}, status=400)
    except PhonemeServiceError as e:
        # The service refusing the text (an unknown language) is the caller's mistake.
        response = JsonResponse({"error": str(e)}, status=400 if e.status == 400 else 502)
    else:
        response = JsonResponse(
            {
                "score": result.score,
                "phonemes_1": result.phonemes_1,
                "phonemes_2": result.phonemes_2,
                "cached": result.cached,
            }
        )
    response["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.3f}"
    return response


def parse_json(raw):
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"body is not JSON: {e}") from e
