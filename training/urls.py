from __future__ import annotations

from django.urls import path

from training import history, launch, views

urlpatterns = [
    # Monitoring
    path("", views.home, name="home"),
    path("live/board/", views.home_board, name="home_board"),
    path("live/finished/", views.runs_finished, name="runs_finished"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("runs/<int:pk>/live/", views.run_live, name="run_live"),
    path("runs/<int:pk>/samples/", views.run_samples, name="run_samples"),
    path("runs/<int:pk>/trail/", views.run_trail, name="run_trail"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<int:pk>/epoch/", views.run_use_epoch, name="run_use_epoch"),
    path("runs/<int:pk>/settle/", views.run_settle, name="run_settle"),
    # End of Monitoring
]

# Launch form
urlpatterns += [
    path("launch/", launch.launch, name="launch"),
    path("launch/validate/", launch.launch_validate, name="launch_validate"),
    path("launch/refresh/", launch.launch_refresh, name="launch_refresh"),
]

# History
urlpatterns += [
    path("history/", history.history, name="history"),
    path("history.csv", history.history_csv, name="history_csv"),
    path("compare/", history.compare, name="compare"),
]
