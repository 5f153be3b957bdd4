"""The project's middleware: every HTTP request counted and timed for /metrics, by view and
status (robotperf.metrics); and a 503 with Retry-After, never a 500, for a request that failed
because a service it needs did not answer: Redis (the admin's login sessions, the store, the
locks) or the database (the APIs answer their own 503s as JSON; this catches what the other
pages raise).

The metrics middleware is async-capable, so that under ASGI the API's requests never go through
a thread for it; first in the stack, so that it sees every answer, static files and errors
included.
"""

import logging
import time

import redis
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.utils.deprecation import MiddlewareMixin

from convstore.exceptions import StoreUnavailable
from robotperf.metrics import count_request

log = logging.getLogger(__name__)
UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    StoreUnavailable,
    OperationalError,
    InterfaceError,
)
# Seconds to wait before trying again: a Redis or database restarting.
RETRY_AFTER = 1


class RequestMetricsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        started = time.perf_counter()
        response = self.get_response(request)
        count_request(request, response, time.perf_counter() - started)
        return response

    async def __acall__(self, request):
        started = time.perf_counter()
        response = await self.get_response(request)
        count_request(request, response, time.perf_counter() - started)
        return response


class ServiceUnavailableMiddleware(MiddlewareMixin):
    def process_exception(self, request, exception):
        if not isinstance(exception, UNAVAILABLE):
            return None
        # The message names a server: the log keeps it, the page does not.
        log.warning("%s %s: a service did not answer: %s", request.method, request.path, exception)
        response = HttpResponse(
            "503 Service Unavailable: a service this page needs does not answer; try again.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = str(RETRY_AFTER)
        return response
