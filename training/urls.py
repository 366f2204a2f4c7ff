from __future__ import annotations

from django.urls import path

from training import history, views

urlpatterns = [
    path("", views.home, name="home"),
]

# History
urlpatterns += [
    path("history/", history.history, name="history"),
    path("history.csv", history.history_csv, name="history_csv"),
    path("compare/", history.compare, name="compare"),
]
