from __future__ import annotations

from django.urls import path

from training import launch, views

urlpatterns = [
    path("", views.home, name="home"),
]

# Launch form
urlpatterns += [
    path("launch/", launch.launch, name="launch"),
    path("launch/validate/", launch.launch_validate, name="launch_validate"),
    path("launch/refresh/", launch.launch_refresh, name="launch_refresh"),
]
