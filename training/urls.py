from __future__ import annotations

from django.urls import path

from training.views import compare, history, launch, monitor
from training.views import datasets as dataset_views
from training.views import notifications as notification_views

urlpatterns = [
    # Monitoring
    path("", monitor.home, name="home"),
    path("live/board/", monitor.home_board, name="home_board"),
    path("live/finished/", monitor.runs_finished, name="runs_finished"),
    path("runs/<int:pk>/", monitor.run_detail, name="run_detail"),
    path("runs/<int:pk>/live/", monitor.run_live, name="run_live"),
    path("runs/<int:pk>/samples/", monitor.run_samples, name="run_samples"),
    path("runs/<int:pk>/trail/", monitor.run_trail, name="run_trail"),
    path("runs/<int:pk>/cancel/", monitor.run_cancel, name="run_cancel"),
    path("runs/<int:pk>/epoch/", monitor.run_use_epoch, name="run_use_epoch"),
    path("runs/<int:pk>/settle/", monitor.run_settle, name="run_settle"),
    path("runs/<int:pk>/queue/", monitor.run_queue, name="run_queue"),
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
    path("compare/", compare.compare, name="compare"),
]

# Datasets: a model's training images
_dataset = "models/<str:remote_id>/"
urlpatterns += [
    path("models/new/", dataset_views.dataset_new, name="dataset_new"),
    path(_dataset, dataset_views.dataset_page, name="dataset"),
    path(_dataset + "status/", dataset_views.dataset_status, name="dataset_status"),
    path(_dataset + "upload/", dataset_views.dataset_upload, name="dataset_upload"),
    path(_dataset + "trigger/", dataset_views.dataset_trigger, name="dataset_trigger"),
    path(_dataset + "pairs/", dataset_views.dataset_pair_add, name="dataset_pair_add"),
    path(
        _dataset + "pairs/<int:pk>/remove/",
        dataset_views.dataset_pair_remove,
        name="dataset_pair_remove",
    ),
    path(_dataset + "images/<int:pk>/", dataset_views.dataset_image_file, name="dataset_image"),
    path(
        _dataset + "images/<int:pk>/caption/",
        dataset_views.dataset_caption,
        name="dataset_caption",
    ),
    path(
        _dataset + "images/<int:pk>/replace/",
        dataset_views.dataset_replace,
        name="dataset_replace",
    ),
    path(_dataset + "images/<int:pk>/remove/", dataset_views.dataset_remove, name="dataset_remove"),
]

# Notifications and the doorbell
urlpatterns += [
    path(
        "notifications/",
        notification_views.preferences,
        name="notification_preferences",
    ),
    path("team/hooks/", notification_views.team_hooks, name="team_hooks"),
    path("team/deliveries/", notification_views.delivery_log, name="delivery_log"),
    path("hooks/scenario/<str:token>/", notification_views.ring_doorbell, name="doorbell"),
]
