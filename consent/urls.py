from django.urls import path

from . import views

app_name = "consent"
urlpatterns = [
    path("consent-history/", views.consent_history, name="consent-history"),
    path("exports/<uuid:token>/", views.export_download, name="export-download"),
]
