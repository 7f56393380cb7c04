from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import consent, views
from .adjustments import AdjustmentsView
from .experiments import ExperimentResultsView
from .surveys import SurveyResponsesView, SurveyView

urlpatterns = [
    path("events", views.EventsView.as_view(), name="api-events"),
    path("decide", views.DecideView.as_view(), name="api-decide"),
    path("adjustments", AdjustmentsView.as_view(), name="api-adjustments"),
    path("consent-policy", consent.ConsentPolicyView.as_view(), name="api-consent-policy"),
    path("consent", consent.ConsentView.as_view(), name="api-consent"),
    path(
        "consent/<str:visitor_id>", consent.ConsentDetailView.as_view(), name="api-consent-detail"
    ),
    path(
        "experiments/<slug:key>/results",
        ExperimentResultsView.as_view(),
        name="api-experiment-results",
    ),
    path("surveys/<slug:key>", SurveyView.as_view(), name="api-survey"),
    path(
        "surveys/<slug:key>/responses",
        SurveyResponsesView.as_view(),
        name="api-survey-responses",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its set-up script as a file: no inline script under the CSP.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("privacy-requests", consent.PrivacyRequestsView.as_view(), name="api-privacy-requests"),
    path(
        "privacy-requests/<uuid:request_id>",
        consent.PrivacyRequestDetailView.as_view(),
        name="api-privacy-request-detail",
    ),
    path(
        "privacy-exports/<str:link>", consent.PrivacyExportView.as_view(), name="api-privacy-export"
    ),
]
