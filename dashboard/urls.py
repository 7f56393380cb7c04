from django.urls import path

from . import views

app_name = "dashboard"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("rules/", views.rules, name="rules"),
    path("experiments/", views.experiments, name="experiments"),
    path("retention/", views.retention, name="retention"),
    path("feedback/", views.feedback, name="feedback"),
    path("segments/", views.segments, name="segments"),
    path("data-quality/", views.data_quality, name="data-quality"),
    path("consent/", views.consent, name="consent"),
]
