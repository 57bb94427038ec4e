from django.contrib import admin
from django.http import HttpResponsePermanentRedirect
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from features.api.views_misc import api_not_found
from memicos_site.chrome import cached_static
from memicos_site.health import healthz


def favicon(request):
    # browsers ask for /favicon.ico on responses that link no icon (JSON, files); pages link the SVG
    return HttpResponsePermanentRedirect(cached_static("favicon.svg"))


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("features.api.urls")),
    path("api/", include("imports.api_urls")),
    path("api/", include("inference.api_urls")),
    path("api/", include("autointerp.api_urls")),
    path("api/", include("retrieval.api_urls")),
    path("api/", include("graphs.api_urls")),
    re_path(r"^api/.*$", api_not_found),
    path("", include("imports.urls")),
    path("", include("inference.urls")),
    path("", include("autointerp.urls")),
    path("", include("retrieval.urls")),
    path("", include("graphs.urls")),
    path("", include("features.urls")),
]

handler404 = "memicos_site.errors.page_not_found"
handler500 = "memicos_site.errors.server_error"
