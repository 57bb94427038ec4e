"""Site-wide 404/500 handlers: JSON `{"message"}` under /api/, the HTML page elsewhere."""

import sys

from django.http import JsonResponse
from django.views import defaults

from memicos_site.middleware import outage_of, outage_response


def page_not_found(request, exception):
    if request.path.startswith("/api/"):
        return JsonResponse({"message": str(exception) or "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    service = outage_of(sys.exc_info()[1])  # raised in a middleware (sessions, auth), past process_exception
    if service is not None:
        return outage_response(request, service)
    if request.path.startswith("/api/"):
        # No details: they may leak internals. The traceback is in the server log.
        return JsonResponse({"message": "Internal server error."}, status=500)
    return defaults.server_error(request)
