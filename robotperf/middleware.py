"""Every HTTP request counted and timed for /metrics, by view and status (robotperf.metrics).

Async-capable, so that under ASGI the API's requests never go through a thread for it; first in
the stack, so that it sees every answer, static files and errors included.
"""

import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from robotperf.metrics import count_request


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
