"""OpenFeature's OFREP endpoints, included at ``/ofrep/v1/`` from the application's root (an
OFREP provider is given the app's base URL and adds the path itself)."""

from django.urls import path

from .ofrep import OfrepConfigurationView, OfrepFlagsView, OfrepFlagView

urlpatterns = [
    path("evaluate/flags/<str:key>", OfrepFlagView.as_view(), name="ofrep-flag"),
    path("evaluate/flags", OfrepFlagsView.as_view(), name="ofrep-flags"),
    path("configuration", OfrepConfigurationView.as_view(), name="ofrep-configuration"),
]
