from django.urls import path

from . import views

app_name = "dashboard"
urlpatterns = [
    path("data-quality/", views.data_quality, name="data-quality"),
]
