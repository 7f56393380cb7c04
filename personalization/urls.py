from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.defaults import page_not_found
from django.views.defaults import server_error as html_server_error
from django.views.generic import RedirectView

from .api.errors import JSON_PREFIXES, json_404, json_500

FAVICON = "dashboard/favicon.svg"


class FaviconView(RedirectView):
    """``/favicon.ico``, which browsers ask for on any page without an icon link: the
    product's icon among the static files (whatever their storage names it)."""

    permanent = False

    def get_redirect_url(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return static(FAVICON)


urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("favicon.ico", FaviconView.as_view(), name="favicon"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("personalization.api.urls")),
    # OpenFeature's Remote Evaluation Protocol: its paths are fixed from the root.
    path("ofrep/v1/", include("personalization.api.ofrep_urls")),
    path("dashboard/", include("dashboard.urls")),
    path("privacy/", include("consent.urls")),
    path("demo/", include("personalization.demo")),
]

handler404 = "personalization.urls.not_found"
handler500 = "personalization.urls.server_error"


def not_found(request, exception=None):  # type: ignore[no-untyped-def]
    if request.path.startswith(JSON_PREFIXES):
        return json_404(request, exception)

    return page_not_found(request, exception)


def server_error(request):  # type: ignore[no-untyped-def]
    if request.path.startswith(JSON_PREFIXES):
        return json_500(request)

    return html_server_error(request)
