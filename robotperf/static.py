"""Static files served by the app itself (whitenoise), without taking the async stack off its
event loop.

WhiteNoise's middleware is sync only: in the ASGI stack Django would run it, and so every
request, API calls included, through one shared thread. This one is async-capable: a request
outside STATIC_URL goes straight on, and only a static file's lookup and open run in a thread.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        if request.path_info.startswith(self.static_prefix):
            response = await sync_to_async(self.serve_file, thread_sensitive=False)(request)
            if response is not None:
                return response
        return await self.get_response(request)

    def serve_file(self, request):
        """The response for a static file at the request's path, or None when there is none."""
        path = request.path_info
        static_file = self.find_file(path) if self.autorefresh else self.files.get(path)
        return None if static_file is None else self.serve(static_file, request)
