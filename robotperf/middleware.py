"""503 with Retry-After, never 500, for a request that failed because a service it needs did not
answer: Redis (the admin's login sessions, the store, the locks) or the database.

The APIs answer their own 503s as JSON; this catches what the other pages raise.
"""

import logging

import redis
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.utils.deprecation import MiddlewareMixin

from convstore.exceptions import StoreUnavailable

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
