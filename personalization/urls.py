from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from .api.errors import json_404, json_500

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/", include("personalization.api.urls")),
    path("dashboard/", include("dashboard.urls")),
    path("privacy/", include("consent.urls")),
    path("demo/", include("personalization.demo")),
]

handler404 = "personalization.urls.not_found"
handler500 = "personalization.urls.server_error"


def not_found(request, exception=None):  # type: ignore[no-untyped-def]
    if request.path.startswith("/api/"):
        return json_404(request, exception)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error(request):  # type: ignore[no-untyped-def]
    if request.path.startswith("/api/"):
        return json_500(request)
    from django.views.defaults import server_error as html_server_error

    return html_server_error(request)
